# LedgerCore Realtime server image: `docker build -t ledgercore .`
# The same image runs the servers (default command), the task worker
# (`python manage.py db_worker`) and the migrations (`python manage.py migrate`).

FROM python:3.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

FROM python:3.13-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LEDGERCORE_VAR_DIR=/var/lib/ledgercore \
    PROMETHEUS_MULTIPROC_DIR=/var/lib/ledgercore/metrics
RUN groupadd --system --gid 10001 ledgercore \
    && useradd --system --uid 10001 --gid ledgercore --home-dir /app --shell /usr/sbin/nologin ledgercore \
    && mkdir -p /var/lib/ledgercore/metrics \
    && chown -R ledgercore:ledgercore /var/lib/ledgercore
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=root:root . /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# daphne, draining on SIGTERM (LEDGERCORE_DRAIN_SECONDS, default 10 s).
STOPSIGNAL SIGTERM
CMD ["python", "-m", "ledgercore.serve", "-b", "0.0.0.0", "-p", "8000", "--proxy-headers", "ledgercore.asgi:application"]
