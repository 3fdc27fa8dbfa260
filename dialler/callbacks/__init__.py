"""Callbacks booked by customers and agents, driven by CallbackWorkflow."""
