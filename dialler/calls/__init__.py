"""Call sessions, dispositions and contact history."""
