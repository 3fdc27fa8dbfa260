"""Supervisor analytics: reports over any period of UK days, by hour, and their CSV rendering.

``periods`` turns a range of UK calendar days into instants (DST days are 23 or 25 hours long);
``queries`` reads PostgreSQL (one function per report, pure SQL plus small pure functions);
``csv`` renders any report's rows for Excel; ``conversions`` extracts signature and document arrivals
from CDC change records (the only durable record of *when* a customer converted); ``depth`` samples
queue depths for "customers waiting over time". Nothing here does I/O at import.
"""
