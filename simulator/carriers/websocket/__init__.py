"""The ``/chat`` WebSocket carrier: :mod:`.carrier` (frames in and out, the route's read loop), :mod:`.voice` (the
character's voice and ears as Pipecat frames), :mod:`.pipecat` (the Pipecat ``Frame`` codec). Loop thread only.
"""
