"""Database access: the dialler's PostgreSQL (read/write) and the main app's MySQL replica (read-only)."""
