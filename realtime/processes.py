"""This server process's identity and heartbeat, what other processes do
when it dies, and repairs retried until the database takes them.

- Every server process has an id (``PROCESS_ID``) and refreshes its
  ``ServerProcess.heartbeat_at`` every ``LEDGERCORE_PROCESS_HEARTBEAT_SECONDS``
  from a daemon thread of its own (never the event loop, never the thread
  that serves the ORM to the sockets). It lives in the database, so it works
  the same on both stacks.
- Whatever a process owns (a credit hold, a running query record) carries
  its id. A process whose heartbeat is older than
  ``LEDGERCORE_PROCESS_DEAD_SECONDS`` is dead: the registered reapers
  (``on_dead``) of any live process settle what it owned. A process judges
  others so only after its own database access has been healthy for two
  heartbeats, so an outage that stopped every heartbeat does not make live
  processes look dead to the first one that reconnects.
- A process also knows at once that a process of its own machine (same
  host name and PID namespace) has died when that PID no longer exists:
  a server restarted after a crash settles what its predecessor left as
  soon as it starts, without waiting for the heartbeat to age.
- ``retry_until_done``: a write that failed because the database did not
  answer (finishing a query record, say) is retried every second until it
  goes through.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections
from django.db.models import Q
from django.utils import timezone

# Re-exported: apps call processes.is_database_error (its home is realtime.errors).
from realtime.errors import is_database_error as is_database_error  # noqa: PLC0414
from realtime.models import ServerProcess

log = logging.getLogger(__name__)

PROCESS_ID = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
# Rows of processes silent this long are deleted (what they owned is
# settled long before).
FORGET_AFTER = timedelta(hours=1)
RETRY_SECONDS = 1.0

# Settle what dead processes own: the things matching the filter (built by
# ``owned_by_dead`` for the model's owner and creation fields); returns how
# many were settled.
Reaper = Callable[["DeadOwners"], int]
_reapers: list[tuple[str, Reaper]] = []
# Called every heartbeat, for periodic work of other apps.
_periodic: list[tuple[str, Callable[[], object]]] = []


def on_dead(name: str) -> Callable[[Reaper], Reaper]:
    def register(reaper: Reaper) -> Reaper:
        _reapers.append((name, reaper))
        return reaper

    return register


def every_heartbeat(name: str, work: Callable[[], object]) -> None:
    _periodic.append((name, work))


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


HOSTNAME = socket.gethostname()[:255]
PID_NAMESPACE = _pid_namespace()


@dataclass(frozen=True)
class DeadOwners:
    """Who is dead: ``dead`` (known for sure), and, when ``alive`` is
    given, every owner not in it whose thing is older than ``cutoff`` (an
    owner that has not written its first heartbeat yet is not dead)."""

    dead: frozenset[str]
    alive: frozenset[str] | None
    cutoff: datetime

    def filter(self, owner: str = "owner", created: str = "created_at") -> Q:
        known = Q(**{f"{owner}__in": self.dead})
        if self.alive is None:
            return known
        silent = ~Q(**{f"{owner}__in": self.alive}) & ~Q(**{owner: ""}) & Q(**{f"{created}__lt": self.cutoff})
        return known | silent


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def dead_on_this_machine() -> set[str]:
    """Processes of this host and PID namespace whose PID is gone (or is
    this process's own: the earlier owner of the PID is gone)."""
    if not PID_NAMESPACE:
        return set()
    rows = ServerProcess.objects.filter(hostname=HOSTNAME, pid_namespace=PID_NAMESPACE).exclude(pk=PROCESS_ID)
    return {
        process_id for process_id, pid in rows.values_list("id", "pid") if pid == os.getpid() or not _pid_exists(pid)
    }


def dead_cutoff() -> datetime:
    return timezone.now() - timedelta(seconds=settings.LEDGERCORE_PROCESS_DEAD_SECONDS)


def alive_ids(cutoff: datetime | None = None) -> set[str]:
    moment = cutoff or dead_cutoff()
    return set(ServerProcess.objects.filter(heartbeat_at__gte=moment).values_list("id", flat=True)) | {PROCESS_ID}


def beat() -> None:
    now = timezone.now()
    updated = ServerProcess.objects.filter(pk=PROCESS_ID).update(heartbeat_at=now)
    if not updated:
        ServerProcess.objects.update_or_create(
            pk=PROCESS_ID,
            defaults={"heartbeat_at": now},
            create_defaults={
                "heartbeat_at": now,
                "started_at": now,
                "hostname": HOSTNAME,
                "pid_namespace": PID_NAMESPACE,
                "pid": os.getpid(),
            },
        )


def reap_dead(*, by_heartbeat: bool = True) -> int:
    """Run every reaper once; returns how many things they settled.
    ``by_heartbeat=False``: only for the processes known dead on this
    machine."""
    cutoff = dead_cutoff()
    dead = dead_on_this_machine()
    alive = frozenset(alive_ids(cutoff) - dead) if by_heartbeat else None
    if alive is None and not dead:
        return 0
    owners = DeadOwners(frozenset(dead), alive, cutoff)
    settled = 0
    for name, reaper in _reapers:
        try:
            settled += reaper(owners)
        except Exception as exc:
            if not is_database_error(exc):
                log.exception("reaper %s failed", name)
            else:
                log.warning("reaper %s: the database did not answer (%s)", name, type(exc).__name__)
    ServerProcess.objects.filter(heartbeat_at__lt=timezone.now() - FORGET_AFTER).delete()
    if dead:
        # Settled: their rows are no longer needed to tell.
        ServerProcess.objects.filter(pk__in=dead).delete()
    return settled


@dataclass
class _Repair:
    description: str
    work: Callable[[], object]
    attempts: int = 0
    due: float = 0.0


class _Maintenance:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._repairs: list[_Repair] = []
        self._healthy_since: float | None = None
        self._last_beat = 0.0
        self._last_reap = 0.0

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="process-heartbeat", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def add(self, repair: _Repair) -> None:
        with self._lock:
            self._repairs.append(repair)
        if not _disabled:
            self.start()

    def pending(self) -> int:
        with self._lock:
            return len(self._repairs)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                close_old_connections()
                self.tick()
            except Exception:
                log.exception("process maintenance failed")
            finally:
                connections.close_all()
            self._stop.wait(min(RETRY_SECONDS, settings.LEDGERCORE_PROCESS_HEARTBEAT_SECONDS))

    def tick(self) -> None:
        now = time.monotonic()
        interval = settings.LEDGERCORE_PROCESS_HEARTBEAT_SECONDS
        if now - self._last_beat >= interval or self._healthy_since is None:
            try:
                beat()
            except DatabaseError as exc:
                if self._healthy_since is not None:
                    log.warning("process heartbeat failed: the database does not answer (%s)", type(exc).__name__)
                self._healthy_since = None
                return
            self._last_beat = now
            if self._healthy_since is None:
                self._healthy_since = now
        self._run_repairs(now)
        if now - self._last_reap < interval:
            return
        self._last_reap = now
        if now - self._healthy_since < 2 * interval:
            try:
                settled = reap_dead(by_heartbeat=False)
            except DatabaseError as exc:
                log.warning("reaping dead processes failed (%s)", type(exc).__name__)
            else:
                if settled:
                    log.warning("settled %d things left by dead server processes of this machine", settled)
        else:
            for name, work in _periodic:
                try:
                    work()
                except Exception as exc:
                    if is_database_error(exc):
                        log.warning("%s: the database did not answer (%s)", name, type(exc).__name__)
                    else:
                        log.exception("%s failed", name)
            try:
                settled = reap_dead()
            except DatabaseError as exc:
                log.warning("reaping dead processes failed (%s)", type(exc).__name__)
            else:
                if settled:
                    log.warning("settled %d things left by dead server processes", settled)

    def _run_repairs(self, now: float) -> None:
        with self._lock:
            due = [r for r in self._repairs if r.due <= now]
        for repair in due:
            try:
                repair.work()
            except Exception as exc:
                repair.attempts += 1
                if is_database_error(exc):
                    repair.due = now + RETRY_SECONDS
                    if repair.attempts in (1, 10) or repair.attempts % 60 == 0:
                        log.warning("%s: still pending (%d attempts)", repair.description, repair.attempts)
                else:
                    # A bug, not an outage: keep trying, but slowly and loudly.
                    repair.due = now + min(60.0, 2.0**repair.attempts)
                    log.exception("%s failed (attempt %d)", repair.description, repair.attempts)
                continue
            with self._lock:
                self._repairs.remove(repair)
            if repair.attempts:
                log.info("%s: done after %d retries", repair.description, repair.attempts)


_maintenance = _Maintenance()


_serving = False
_disabled = False


def start() -> None:
    """Heartbeat this process and settle what dead ones left (idempotent);
    called at startup and by every connection of a server process."""
    global _serving
    _serving = True
    if not _disabled:
        _maintenance.start()


def disable() -> None:
    """No heartbeat thread in this process (the test suite's in-process
    server, whose database comes and goes between tests)."""
    global _disabled
    _disabled = True
    _maintenance.stop()


def serving() -> bool:
    """True in a process that serves connections (once one has arrived)."""
    return _serving


def stop(timeout: float = 5.0) -> None:
    _maintenance.stop(timeout)


def retry_until_done(description: str, work: Callable[[], object]) -> None:
    """Run ``work`` (synchronous, database writes) on the maintenance thread
    until it returns without raising; first try within a second."""
    _maintenance.add(_Repair(description, work, due=time.monotonic() + RETRY_SECONDS))


def pending_repairs() -> int:
    return _maintenance.pending()
