# LedgerCore Realtime. `make run` serves the embedded stack; `make test` runs
# the suite (embedded stack, then PostgreSQL + Redis when they answer).
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT
# This checkout's development secrets (var/) unless the environment sets
# them: with DJANGO_DEBUG off the server refuses to start without a real key.
DJANGO_SECRET_KEY ?= $(shell scripts/dev-secret.sh django)
export DJANGO_SECRET_KEY

.PHONY: install run test test-embedded test-scaled lint format bench bench-peers clean up down conformance superuser screenshots

.venv/.installed: requirements.txt requirements-dev.txt package.json package-lock.json scripts/bootstrap.sh
	scripts/bootstrap.sh

install: .venv/.installed

run: install
	scripts/run.sh

# A staff login for Django admin (on the database `make run` uses).
superuser: install
	.venv/bin/python manage.py createsuperuser

test: install
	scripts/test.sh

test-embedded: install
	scripts/test.sh embedded

test-scaled: install
	scripts/test.sh scaled

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy .
	.venv/bin/lint-imports
	.venv/bin/hadolint Dockerfile
	.venv/bin/check-jsonschema --builtin-schema vendor.compose-spec compose.yaml
	.venv/bin/python -m json.tool deploy/grafana-dashboard.json > /dev/null
	.venv/bin/python manage.py export_typescript --check

# The scaled stack in containers (Docker with the compose plugin): PostgreSQL,
# Redis, two servers, the task worker, nginx on port 8000. Needs
# DJANGO_SECRET_KEY and POSTGRES_PASSWORD in the environment or in .env.
up:
	docker compose up -d --build --wait

down:
	docker compose down

# The official Engine.IO and Socket.IO protocol suites (../shared/conformance).
conformance: install
	scripts/conformance.sh

# The console screenshots README shows (docs/*.png), from the browser tests.
screenshots: install
	scripts/screenshots.sh

format: install
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

# The servers the benchmarks compare the project with (bench/peers/: Node.js
# Socket.IO and ws), from npm as the lock file pins them; again only when
# package.json or the lock file changes.
bench/peers/node_modules/.installed: bench/peers/package.json bench/peers/package-lock.json
	cd bench/peers && npm ci --no-audit --no-fund --loglevel=error --cache ../../.cache/npm
	touch $@

bench-peers: bench/peers/node_modules/.installed

bench: install bench-peers
	.venv/bin/python bench/realtime.py --peers
	.venv/bin/python bench/connect_rate.py
	.venv/bin/python bench/cluster_fanout.py
	.venv/bin/python bench/socketio_codec.py
	.venv/bin/python bench/http_api.py
	.venv/bin/python bench/credits.py
	.venv/bin/python bench/marketdata.py
	.venv/bin/python bench/query.py
	.venv/bin/python bench/compliance.py
	.venv/bin/python bench/chat.py
	.venv/bin/python bench/charging_faults.py
	.venv/bin/python bench/shutdown.py
	.venv/bin/python bench/recovery.py
	.venv/bin/python bench/slow_consumers.py
	.venv/bin/python bench/asgi_servers.py
	.venv/bin/python bench/many_sockets.py

clean:
	rm -rf .venv var node_modules bench/peers/node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis
