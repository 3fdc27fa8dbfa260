"""Clients for the outside world: Twilio, SQS, the binlog. Small interfaces over the real SDKs."""
