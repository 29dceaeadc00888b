"""A JWKS endpoint of the test's own (threaded http.server on 127.0.0.1)
serving RS256 keys made on demand, for Clerk-style tokens."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.wsclient import unique


class KeyServer:
    """Serves the JWKS document of its keys and counts requests in
    ``fetches``. After ``slow()``, each request signals ``entered`` and
    waits for ``release`` before answering; while ``fail`` is set it
    answers 500."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0
        self.hold = False
        self.fail = False
        self.entered = threading.Event()
        self.release = threading.Event()
        self.holding = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                if outer.hold:
                    outer.holding += 1
                    outer.entered.set()
                    outer.release.wait(30)
                    outer.holding -= 1
                if outer.fail:
                    self.send_error(500)
                    return
                body = json.dumps({"keys": [outer.jwk(kid) for kid in outer.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self, kid: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
        data.update({"kid": kid, "use": "sig", "alg": "RS256"})
        return data

    def token(self, kid: str, **claims: Any) -> str:
        """A token signed with key ``kid``, valid for a minute, for a new subject."""
        now = int(time.time())
        body = {"sub": unique("clerk_user"), "iat": now, "nbf": now - 1, "exp": now + 60, **claims}
        return jwt.encode(body, self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def slow(self) -> None:
        self.entered.clear()
        self.release.clear()
        self.hold = True

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
