"""A query's response chunks on a real daphne process wait for a client
that reads slower than the query produces them (realtime.transport
``write_paced``): the client is not closed as a slow consumer (4008), and
gets every row once it reads."""

from __future__ import annotations

import time

import pytest

from devtools.rawws import RawWebSocket
from devtools.servers import DaphneProcess, manage
from tests.stacks import migrated_stack_env, scaled_stack
from tests.wsclient import dev_token

ROWS = 20_000
# The bench's loader: ROWS ledger entries of one user, written with raw SQL.
SEED = f"from bench.query import load_rows; load_rows({ROWS})"
USER = "bench_query"


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    with migrated_stack_env(
        tmp_path_factory.mktemp("pacing"),
        scaled_stack(),
        LEDGERCORE_QUERY_MAX_ROWS=str(ROWS),
        LEDGERCORE_QUERY_DEFAULT_LIMIT=str(ROWS),
        LEDGERCORE_QUERY_CHUNK_ROWS="100",
        # About 1 MB of rows against a 64 KiB / 64-frame send buffer.
        LEDGERCORE_SEND_BUFFER_BYTES=str(64 * 1024),
        LEDGERCORE_SEND_BUFFER_FRAMES="64",
        LEDGERCORE_SLOW_CLOSE_GRACE_SECONDS="2",
    ) as env:
        manage(env, "shell", "-c", SEED)
        yield env


def test_a_client_that_reads_slower_than_its_query_gets_every_row_and_is_not_closed(environment, tmp_path):
    server = DaphneProcess(environment, tmp_path / "daphne.log").start()
    try:
        ws = RawWebSocket("127.0.0.1", server.port, f"/ws?token={dev_token(USER)}", rcvbuf=4096)
        ws.send_event("query", {"sql": "SELECT sequence, created_at FROM credit_entries ORDER BY sequence"}, "q")
        # Not reading for a while: the query fills the client's small
        # receive buffer, then the server's send buffer up to its low mark.
        time.sleep(3)
        sequences: list[int] = []
        events: list[str] = []
        while True:
            frame = ws.recv_event(timeout=20)
            if frame.get("id") != "q":
                continue
            events.append(frame["event"])
            if frame["event"] == "query_response":
                sequences.extend(row[0] for row in frame["data"]["rows"])
                assert all(isinstance(row[1], int) for row in frame["data"]["rows"])
            if frame["event"] in ("query_completed", "query_error"):
                break
        assert events[0] == "query_started"
        assert events[-1] == "query_completed", events[-3:]
        assert sequences == list(range(1, ROWS + 1))
        ws.close()
        assert "closing slow consumer" not in server.logs()
    finally:
        server.stop()


def test_a_client_reading_a_large_query_in_a_busy_room_gets_both_and_is_not_closed(environment, tmp_path):
    """200 events/s to the user's own room while the same connection reads a
    query of about 1 MB through a send buffer of 64 KiB, slower than the
    query produces it: the query's chunks
    keep the buffer over the stall mark, but the client reads, so the
    room's events are written between them: it gets every row and every
    event, in order, and is not closed."""
    env = {
        **environment,
        "BENCH_PUBLISH_RATE": "200",
        "BENCH_PUBLISH_ROOM": f"user:{USER}",
        "BENCH_PUBLISH_PAD": "100",
    }
    server = DaphneProcess(env, tmp_path / "daphne.log", app="devtools.publisher_app:application").start()
    try:
        ws = RawWebSocket("127.0.0.1", server.port, f"/ws?token={dev_token(USER)}", rcvbuf=4096)
        seqs: list[int] = []
        skipped: list[int] = []
        sequences: list[int] = []
        events: list[str] = []

        def read(frame: dict) -> None:
            if frame["event"] == "application_broadcast":
                seqs.append(frame["data"]["seq"])
                skipped.append(frame["data"]["skipped"])
            elif frame.get("id") == "q":
                events.append(frame["event"])
                if frame["event"] == "query_response":
                    sequences.extend(row[0] for row in frame["data"]["rows"])

        while len(seqs) < 50:
            read(ws.recv_event(timeout=20))
        ws.send_event("query", {"sql": "SELECT sequence, created_at FROM credit_entries ORDER BY sequence"}, "q")
        while not events or events[-1] not in ("query_completed", "query_error"):
            read(ws.recv_event(timeout=20))
            time.sleep(0.002)  # a client that reads, slower than the query comes
        during = len(seqs)
        while len(seqs) < during + 100:
            read(ws.recv_event(timeout=20))
        assert events[-1] == "query_completed", events[-3:]
        assert sequences == list(range(1, ROWS + 1))
        steps = [(b - a) - (sb - sa) for a, b, sa, sb in zip(seqs, seqs[1:], skipped, skipped[1:], strict=False)]
        assert set(steps) == {1}, [(seqs[i], seqs[i + 1]) for i, step in enumerate(steps) if step != 1][:10]
        ws.close()
        assert "closing slow consumer" not in server.logs()
    finally:
        server.stop()
