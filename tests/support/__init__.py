"""Helpers shared between test modules: stand-ins for outside services that speak their real wire
formats (twilio_api), customers written to the replica as the main app would, the live API, the
compliance clock, the browser and the publisher under test. Test modules import from here, never
from one another or from a conftest (a conftest holds fixtures only)."""
