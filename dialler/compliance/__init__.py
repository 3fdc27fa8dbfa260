"""Do-not-call list and SMS opt-outs."""
