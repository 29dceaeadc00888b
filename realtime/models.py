"""Server processes and their heartbeats, in the database so that any
process (on either stack) can tell that another one has died and settle
what it left behind (credit holds, query records)."""

from __future__ import annotations

from django.db import models


class ServerProcess(models.Model):
    id = models.CharField(primary_key=True, max_length=80, help_text="host:pid:random, fixed for the process's life.")
    hostname = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(default=0)
    pid_namespace = models.CharField(
        max_length=40, blank=True, help_text="Processes of one namespace see each other's PIDs."
    )
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "server process"

    def __str__(self) -> str:
        return self.id
