"""SMS conversations and magic links."""
