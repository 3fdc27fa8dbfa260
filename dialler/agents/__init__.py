"""Agents, roles, authentication and presence."""
