"""The wires a session travels on: the ``/chat`` WebSocket (:mod:`.websocket`) and LiveKit (:mod:`.livekit`).

Each carrier adapts its wire to the core's :class:`simulator.core.carrier.Carrier`; carriers never import each
other. Loop thread only.
"""
