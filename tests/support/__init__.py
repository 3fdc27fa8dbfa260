"""Helpers shared between test modules: the receiver of Twilio's webhooks (telephony), customers
written to the replica as the main app would, the live API, the compliance clock, the browser and the
publisher under test. Test modules import from here, never from one another or from a conftest (a
conftest holds fixtures only)."""
