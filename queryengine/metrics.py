"""The query engine's series (``realtime.metrics``): duration and rows of
every query that ran to its end, by outcome."""

from __future__ import annotations

from prometheus_client import Histogram

QUERY_SECONDS = Histogram(
    "ledgercore_query_duration_seconds",
    "Duration of queries that completed.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
QUERY_ROWS = Histogram(
    "ledgercore_query_rows",
    "Rows returned by queries that completed.",
    buckets=(0, 1, 10, 100, 1_000, 10_000, 100_000, 1_000_000),
)
