"""The simulator's message core: sessions, turns, limits, faults, scenarios and RTVI frames; no carrier, no HTTP.

Runs on the simulator's loop thread (see :mod:`simulator.core.state`). Carriers (``simulator.carriers``) and the
HTTP side (``simulator.http``) import this package; it imports neither.
"""
