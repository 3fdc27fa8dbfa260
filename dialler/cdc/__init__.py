"""Change data capture: DMS-shaped change events from the main database."""
