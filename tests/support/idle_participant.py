"""A real ``livekit`` client in its own process that joins a room and then only waits.

``python tests/support/idle_participant.py ROOM_URL TOKEN`` prints ``joined`` once ``room.connect()`` has
returned and the character's ``bot-ready`` data packet has arrived, then idles until killed. Tests freeze it
(``SIGSTOP``) to get a peer that stops reading everything (its data channel, its signal WebSocket) the way a
hung or suspended client does; a frozen process cannot be produced inside the test process. It inherits the
test run's ``LD_PRELOAD`` loopback shim.
"""

from __future__ import annotations

import asyncio
import json
import sys

from livekit import rtc

JOIN_TIMEOUT = 20.0


async def main(url: str, token: str) -> int:
    room = rtc.Room()
    ready = asyncio.Event()

    def on_data(packet: rtc.DataPacket) -> None:
        try:
            message = json.loads(packet.data)
        except ValueError:
            return
        if isinstance(message, dict) and message.get("type") == "bot-ready":
            ready.set()

    room.on("data_received", on_data)
    await asyncio.wait_for(room.connect(url, token), JOIN_TIMEOUT)
    await asyncio.wait_for(ready.wait(), JOIN_TIMEOUT)
    print("joined", flush=True)
    await asyncio.Event().wait()  # until killed
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
