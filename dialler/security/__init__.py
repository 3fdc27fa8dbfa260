"""Encryption of personal data at rest outside our databases: Temporal payloads (the payload codec)
and personal fields of change events (the field envelope). One key ring, from settings or a KMS."""
