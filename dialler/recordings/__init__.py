"""Call recordings: what Twilio recorded, where it belongs, who may play it, and how long it is kept."""
