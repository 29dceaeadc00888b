"""Socket.IO packet encoding: this project's codec (socketio_gateway.packets)
against python-socketio's and python-engineio's packet classes, on the
packets the gateway handles most: an inbound request EVENT with an ack id,
and an outbound room event. Prints microseconds per packet.

    .venv/bin/python bench/socketio_codec.py [--packets 100000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import engineio.packet
import socketio.packet

from socketio_gateway import packets

INBOUND = '4212["query",{"sql":"SELECT symbol, count(*) FROM trades GROUP BY symbol","limit":100}]'
ROOM_EVENT = ["application_broadcast", {"message": "bench", "data": {"marker": "b1-3f9a2c", "n": 42}}, "9f2c41d0:42"]


def per_packet(fn, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=100_000)
    n = parser.parse_args().packets

    def ours_decode() -> None:
        packets.decode_sio(str(packets.decode_text(INBOUND)[1]))

    def library_decode() -> None:
        message = engineio.packet.Packet(encoded_packet=INBOUND)
        socketio.packet.Packet(encoded_packet=message.data)

    def ours_encode() -> None:
        packets.encode_sio(packets.EVENT, "/", ROOM_EVENT)

    def library_encode() -> None:
        engineio.packet.Packet(
            engineio.packet.MESSAGE, socketio.packet.Packet(socketio.packet.EVENT, ROOM_EVENT).encode()
        ).encode()

    rows = [
        ("decode inbound EVENT + ack id", per_packet(ours_decode, n), per_packet(library_decode, n)),
        ("encode outbound EVENT", per_packet(ours_encode, n), per_packet(library_encode, n)),
    ]
    print(f"bench/socketio_codec.py: {n} packets each, microseconds per packet")
    print(f"{'':32}{'ours':>10}{'library':>10}{'ratio':>8}")
    for label, ours, library in rows:
        print(f"{label:32}{ours:>10.2f}{library:>10.2f}{ours / library:>8.2f}")


if __name__ == "__main__":
    main()
