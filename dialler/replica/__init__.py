"""The main claims app's tables on the MySQL replica: the contract (``schema.sql``) and a data generator.

The dialler itself only ever reads the replica. What lives here plays the *main app's* part for
local development, tests and benchmarks: it creates the contract tables and fills them with
realistic, deterministic data.
"""
