"""A small IMDSv2 stand-in for tests and the lab: serves a JSON tree behind the token protocol.

A test double, not part of the agent: it uses the standard library only, because the lab's
guest runs this file with its system python3 (lab/cockpit_lab/seed.py copies it into the seed),
and the tests import it as `cockpit_lab.imds_stub`.

The tree is a nested JSON object mirroring the paths under `/`: an object is served as a
directory listing (sub-objects with a trailing slash), a string as text, anything else as
JSON. A dated version (`/2021-03-23/meta-data/...`, what cloud-init's EC2 datasource asks for)
or `/1.0/` serves what `/latest/` holds, as IMDS does for the categories of that version.
`PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` issues a token; every
GET must carry it in `X-aws-ec2-metadata-token` (401 otherwise, or once it expired).

Faults can be injected for tests (delay, 500, 401, malformed JSON, refuse the token) through
`StubFaults`, or from the command line.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOKEN_PATH = "/latest/api/token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"


@dataclass
class StubFaults:
    """Faults to inject; counters decrement per affected request."""

    delay_seconds: float = 0.0
    errors_500: int = 0
    unauthorized: int = 0
    malformed_paths: set[str] = field(default_factory=set)
    token_failures: int = 0


@dataclass
class StubState:
    """The tree, issued tokens and faults; shared by the handler threads."""

    tree: dict[str, Any]
    faults: StubFaults = field(default_factory=StubFaults)
    tokens: dict[str, float] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, counter: str) -> bool:
        """Consume one unit of a fault counter; True when the fault applies to this request."""
        with self.lock:
            left: int = getattr(self.faults, counter)
            if left > 0:
                setattr(self.faults, counter, left - 1)
                return True
            return False

    def expire_tokens(self) -> None:
        """Make every issued token invalid, as if its TTL had passed."""
        with self.lock:
            self.tokens.clear()


VERSION = re.compile(r"^(\d{4}-\d{2}-\d{2}|1\.0)$")


def lookup(tree: dict[str, Any], path: str) -> Any:
    """The node at a URL path, or None; a dated version is read as `latest`."""
    node: Any = tree
    parts = [p for p in path.split("/") if p]
    if parts and VERSION.match(parts[0]):
        parts[0] = "latest"
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def render(node: Any) -> str:
    """Body of a node: a listing, text, or JSON."""
    if isinstance(node, dict):
        return "\n".join(f"{k}/" if isinstance(v, dict) else k for k, v in node.items())
    if isinstance(node, str):
        return node
    return json.dumps(node)


def make_handler(state: StubState) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to `state`."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "imds-stub"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the requests are recorded in state.requests instead."""

        def _send(self, code: int, body: str, headers: dict[str, str] | None = None) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _common(self, method: str) -> bool:
            state.requests.append((method, self.path))
            if state.faults.delay_seconds:
                time.sleep(state.faults.delay_seconds)
            if state.take("errors_500"):
                self._send(500, "Internal Server Error")
                return False
            return True

        def do_PUT(self) -> None:
            if not self._common("PUT"):
                return
            if self.path != TOKEN_PATH:
                self._send(404, "Not Found")
                return
            ttl_text = self.headers.get(TTL_HEADER, "")
            if not ttl_text.isdigit() or not 1 <= int(ttl_text) <= 21600:
                self._send(400, "Bad Request")
                return
            if state.take("token_failures"):
                self._send(403, "Forbidden")
                return
            token = secrets.token_urlsafe(24)
            with state.lock:
                state.tokens[token] = time.monotonic() + int(ttl_text)
            self._send(200, token, {TTL_HEADER: ttl_text})

        def do_GET(self) -> None:
            if not self._common("GET"):
                return
            token = self.headers.get(TOKEN_HEADER, "")
            with state.lock:
                expiry = state.tokens.get(token)
            if expiry is None or expiry < time.monotonic() or state.take("unauthorized"):
                self._send(401, "Unauthorized")
                return
            path = self.path.split("?", 1)[0]
            if path in state.faults.malformed_paths:
                self._send(200, '{"truncated": ')
                return
            node = lookup(state.tree, path)
            if node is None:
                self._send(404, "Not Found")
                return
            self._send(200, render(node))

    return Handler


class ImdsStub:
    """A running stub on (host, port); port 0 picks a free one. Use as a context manager."""

    def __init__(self, tree: dict[str, Any], host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = StubState(tree=tree)
        self.server = ThreadingHTTPServer((host, port), make_handler(self.state))
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL to point the client at."""
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ImdsStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(argv: list[str] | None = None) -> int:
    """`python3 imds_stub.py --tree FILE [--host ADDR] [--port N]`: serve until killed."""
    parser = argparse.ArgumentParser(prog="imds_stub.py", description=__doc__)
    parser.add_argument("--tree", type=Path, required=True, help="JSON tree to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--errors-500", type=int, default=0, help="answer the first N with 500")
    args = parser.parse_args(argv)
    tree = json.loads(args.tree.read_text())
    stub = ImdsStub(tree, args.host, args.port)
    stub.state.faults.delay_seconds = args.delay
    stub.state.faults.errors_500 = args.errors_500
    print(f"imds-stub serving {args.tree} on {stub.url}", flush=True)
    try:
        stub.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stub.server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
