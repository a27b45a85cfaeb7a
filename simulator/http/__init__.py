"""The simulator's HTTP side: ``/connect`` and ``/chat`` routes (:mod:`.connect`) and the ``/_sim`` control API
(:mod:`.control`). Handlers run on the simulator's loop thread.
"""
