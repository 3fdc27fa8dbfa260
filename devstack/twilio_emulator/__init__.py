"""A local Twilio: REST API (Calls, Messages, Recordings), signed webhooks, TwiML execution.

Run it as its own process (``python -m devstack.twilio_emulator --port N``, or
``devstack.services.start_twilio_emulator``) and point the product's ``twilio_api_base_url`` at it;
the real ``twilio`` SDK cannot tell the difference. What the far end of each call does is scripted
(:mod:`.scripts`), each call keeps a timeline of what the customer heard (:mod:`.timeline`), and
tests drive it with :class:`.client.EmulatorClient`. State is in memory: it survives a worker
crash, as Twilio does, but not a restart of the emulator.
"""
