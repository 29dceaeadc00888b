"""Fixtures of the realtime tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from devtools.servers import DaphneProcess, database_url
from tests.wsclient import DEV_SECRET


@pytest.fixture
def servers(transactional_db: Any, tmp_path: Path) -> Iterator[tuple[DaphneProcess, DaphneProcess]]:
    """Two daphne processes on the test database and Redis (the scaled
    stack), as two servers behind a load balancer."""
    from django.db import connection

    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(connection.settings_dict),
        REDIS_URL=django_settings.REDIS_URL,
        LEDGERCORE_REDIS_PREFIX=django_settings.LEDGERCORE_REDIS_PREFIX,
        LEDGERCORE_DEV_JWT_SECRET=DEV_SECRET,
        LEDGERCORE_VAR_DIR=str(tmp_path),
        LEDGERCORE_THROTTLE_RATES="user=10000/s",
        LOG_LEVEL="WARNING",
    )
    a = DaphneProcess(env, tmp_path / "a.log").start()
    b = DaphneProcess(env, tmp_path / "b.log").start()
    yield a, b
    a.stop()
    b.stop()
