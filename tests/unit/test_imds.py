from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from typing import Any

import pytest
from cockpit_lab.imds_stub import ImdsStub

from cockpit_agent.config import ImdsConfig
from cockpit_agent.errors import ImdsError
from cockpit_agent.facts.imds import IDENTITY_PATH, ImdsClient


def client(url: str, **kw: Any) -> tuple[ImdsClient, list[float]]:
    sleeps: list[float] = []
    cfg = ImdsConfig(endpoint=url, **{"request_timeout_seconds": 1.0, **kw})
    return ImdsClient(cfg, sleep=sleeps.append), sleeps


def test_identity_and_interfaces(imds_stub: ImdsStub) -> None:
    c, _ = client(imds_stub.url)
    ident = c.identity()
    assert ident.instance_id == "i-0fixture000000001"
    assert ident.region == "us-west-2"
    assert ident.availability_zone == "us-west-2a"
    assert ident.instance_type == "c6id.8xlarge"
    assert ident.account_id == "111122223333"
    ifs = c.interfaces()
    assert [(i.mac, i.device_number, i.network_card) for i in ifs] == [
        ("0e:11:22:33:44:01", 0, 0),
        ("0e:11:22:33:44:02", 1, 0),  # network-card absent in the tree: means 0
    ]
    assert ifs[1].local_ipv4s == ["192.168.50.20"]
    assert ifs[1].subnet_id == "subnet-0fixture000000002"


def test_every_get_carries_the_token(imds_stub: ImdsStub) -> None:
    c, _ = client(imds_stub.url)
    c.identity()
    methods = [m for m, _ in imds_stub.state.requests]
    assert methods[0] == "PUT" and methods.count("PUT") == 1


def test_top_level_mac_is_device_zero_whatever_device_number_says(
    imds_tree: dict[str, Any],
) -> None:
    macs = imds_tree["latest"]["meta-data"]["network"]["interfaces"]["macs"]
    macs["0e:11:22:33:44:01"]["device-number"] = "3"
    with ImdsStub(imds_tree) as stub:
        c, _ = client(stub.url)
        devices = {i.mac: i.device_number for i in c.interfaces()}
    assert devices["0e:11:22:33:44:01"] == 0


def test_expired_token_is_refreshed_once(imds_stub: ImdsStub) -> None:
    c, _ = client(imds_stub.url)
    c.identity()
    imds_stub.state.expire_tokens()
    assert c.identity().instance_id == "i-0fixture000000001"
    assert [m for m, _ in imds_stub.state.requests].count("PUT") == 2


def test_persistent_401_is_an_error(imds_stub: ImdsStub) -> None:
    imds_stub.state.faults.unauthorized = 5
    c, _ = client(imds_stub.url)
    with pytest.raises(ImdsError, match="HTTP 401"):
        c.identity()


def test_server_errors_are_retried_with_backoff(imds_stub: ImdsStub) -> None:
    imds_stub.state.faults.errors_500 = 2
    c, sleeps = client(imds_stub.url, retries=3)
    assert c.identity().instance_id == "i-0fixture000000001"
    assert sleeps == [0.5, 1.0]


def test_server_errors_beyond_retries_fail(imds_stub: ImdsStub) -> None:
    imds_stub.state.faults.errors_500 = 10
    c, sleeps = client(imds_stub.url, retries=2)
    with pytest.raises(ImdsError, match=r"after 3 attempt\(s\): HTTP 500"):
        c.identity()
    assert len(sleeps) == 2


def test_slow_answer_times_out_and_retries(imds_stub: ImdsStub) -> None:
    imds_stub.state.faults.delay_seconds = 0.5
    c, _ = client(imds_stub.url, request_timeout_seconds=0.1, boot_wait_seconds=0)
    with pytest.raises(ImdsError, match="unreachable"):
        c.identity()


def test_small_delay_is_fine(imds_stub: ImdsStub) -> None:
    imds_stub.state.faults.delay_seconds = 0.05
    c, _ = client(imds_stub.url)
    assert c.identity().region == "us-west-2"


def test_malformed_json(imds_stub: ImdsStub) -> None:
    imds_stub.state.faults.malformed_paths.add(IDENTITY_PATH)
    c, _ = client(imds_stub.url)
    with pytest.raises(ImdsError, match="not valid JSON"):
        c.identity()


def test_incomplete_identity(imds_tree: dict[str, Any]) -> None:
    imds_tree["latest"]["dynamic"]["instance-identity"]["document"] = json.dumps({"region": "x"})
    with ImdsStub(imds_tree) as stub:
        c, _ = client(stub.url)
        with pytest.raises(ImdsError, match="incomplete"):
            c.identity()


@pytest.mark.parametrize("instance", ["../../etc", "i-1/x", "i-\n", "", "i-" + "0" * 40])
def test_an_instance_id_that_is_not_one_is_refused(
    imds_tree: dict[str, Any], instance: str
) -> None:
    # Issue 14: an instance id containing "/" named a path when a state file was moved aside.
    doc = json.loads(imds_tree["latest"]["dynamic"]["instance-identity"]["document"])
    doc["instanceId"] = instance
    imds_tree["latest"]["dynamic"]["instance-identity"]["document"] = json.dumps(doc)
    with ImdsStub(imds_tree) as stub:
        c, _ = client(stub.url)
        with pytest.raises(ImdsError, match="incomplete"):
            c.identity()


def test_missing_path_is_404(imds_tree: dict[str, Any]) -> None:
    del imds_tree["latest"]["dynamic"]
    with ImdsStub(imds_tree) as stub:
        c, _ = client(stub.url)
        with pytest.raises(ImdsError, match="HTTP 404"):
            c.identity()


def test_token_refused(imds_stub: ImdsStub) -> None:
    imds_stub.state.faults.token_failures = 1
    c, _ = client(imds_stub.url)
    with pytest.raises(ImdsError, match="refused a session token"):
        c.identity()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_unreachable_retries_until_boot_wait_then_fails() -> None:
    clock = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    cfg = ImdsConfig(endpoint=f"http://127.0.0.1:{free_port()}", boot_wait_seconds=10)
    c = ImdsClient(cfg, sleep=sleep, clock=lambda: clock[0])
    with pytest.raises(ImdsError, match="unreachable"):
        c.identity()
    assert sleeps[:4] == [0.5, 1.0, 2.0, 4.0]
    assert sum(sleeps) <= 10


def test_endpoint_that_comes_up_late_is_reached(imds_tree: dict[str, Any]) -> None:
    port = free_port()
    stub = ImdsStub(imds_tree, port=port)
    stub.server.server_close()  # bound but closed: connection refused for now
    started: list[ImdsStub] = []

    def sleep(seconds: float) -> None:
        if not started:
            started.append(ImdsStub(imds_tree, port=port).__enter__())

    c = ImdsClient(ImdsConfig(endpoint=f"http://127.0.0.1:{port}"), sleep=sleep)
    try:
        assert c.identity().instance_id == "i-0fixture000000001"
    finally:
        for s in started:
            s.__exit__(None, None, None)


class _Handler(http.server.BaseHTTPRequestHandler):
    """A hostile IMDS: PUT gives a token, GET answers as `mode` says."""

    mode = "redirect"

    def do_PUT(self) -> None:
        self._send(200, b"token")

    def do_GET(self) -> None:
        if self.mode == "redirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.2:1/steal")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.mode == "huge":
            self._send(200, b"x" * (2 << 20))
        else:  # not UTF-8
            self._send(200, b"\xff\xfe{}")

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("mode", "message"),
    [("redirect", "with a redirect"), ("huge", "over 1048576 bytes"), ("latin", "not UTF-8")],
)
def test_a_hostile_answer_is_the_agents_own_error(
    mode: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy in the environment must not be used for link-local IMDS either.
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9/")
    handler = type("H", (_Handler,), {"mode": mode})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        c, _ = client(f"http://127.0.0.1:{server.server_address[1]}", boot_wait_seconds=0)
        with pytest.raises(ImdsError, match=message):
            c.get(IDENTITY_PATH)
    finally:
        server.shutdown()


def test_outpost_arn_on_an_outpost_and_in_a_region(imds_tree: dict[str, Any]) -> None:
    with ImdsStub(imds_tree) as stub:
        c, _ = client(stub.url)
        assert c.outpost_arn() == (
            "arn:aws:outposts:us-west-2:111122223333:outpost/op-0fixture00000001"
        )
    del imds_tree["latest"]["meta-data"]["outpost-arn"]  # a Region: IMDS answers 404
    with ImdsStub(imds_tree) as stub:
        c, _ = client(stub.url)
        assert c.outpost_arn() is None
        stub.state.faults.errors_500 = 10  # any other failure is still an error
        with pytest.raises(ImdsError, match="HTTP 500"):
            c.outpost_arn()


def test_the_stub_serves_dated_versions_as_latest(imds_stub: ImdsStub) -> None:
    """cloud-init's EC2 datasource asks /2021-03-23/meta-data/instance-id and crawls there."""
    c, _ = client(imds_stub.url)
    assert c.get("/2021-03-23/meta-data/instance-id") == "i-0fixture000000001"
    assert c.get("/2009-04-04/meta-data/") == c.get("/latest/meta-data/")
    with pytest.raises(ImdsError, match="HTTP 404"):
        c.get("/2021-03-23/user-data")  # no user data: 404, as on EC2
    with pytest.raises(ImdsError, match="HTTP 404"):
        c.get("/2021-3-23/meta-data/instance-id")


class _Hostile(_Handler):
    """An IMDS that answers `token` to PUT and `body` to every GET (`raw`: not even HTTP)."""

    token = b"token"
    body = b""
    raw = False

    def do_PUT(self) -> None:
        self._send(200, self.token)

    def do_GET(self) -> None:
        if self.raw:
            self.wfile.write(self.body)
        else:
            self._send(200, self.body)


@pytest.mark.parametrize(
    ("answers", "call", "message"),
    [
        # Issue 14: CR/LF in a token, a non-ASCII MAC and a status line that is not HTTP ended
        # in a traceback (ValueError, UnicodeEncodeError, BadStatusLine).
        ({"token": b"abc\r\nX-Evil: 1"}, "identity", "token that is not printable ASCII"),
        ({"token": b"t\xc3\xa9"}, "identity", "token that is not printable ASCII"),
        ({"body": "0e:11:22:33:44:0\u00e9".encode()}, "interfaces", "it is not one"),
        ({"body": b"0e:11:22:33:44:01/../../x"}, "interfaces", "it is not one"),
        ({"body": b"garbage\r\n\r\n", "raw": True}, "identity", "unreachable: BadStatusLine"),
        ({"body": b"arn:aws:outposts:x\r\nop"}, "outpost_arn", "is not an Outpost's ARN"),
    ],
    ids=["crlf-token", "non-ascii-token", "non-ascii-mac", "path-in-mac", "not-http", "arn"],
)
def test_hostile_answers_end_in_an_imds_error(
    answers: dict[str, Any], call: str, message: str
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Hostile,), answers))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        c, _ = client(f"http://127.0.0.1:{server.server_address[1]}", boot_wait_seconds=0)
        with pytest.raises(ImdsError, match=message):
            getattr(c, call)()
    finally:
        server.shutdown()


class _Drip(_Handler):
    """An IMDS that answers a byte at a time, for ever."""

    def do_PUT(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass  # the client gave up


def test_a_server_that_drips_is_cut_off_by_the_deadline() -> None:
    # Issue 14: a server sending a byte a second kept `facts` running past 150 s; the request
    # timeout applied per socket operation, and boot_wait only between attempts.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Drip)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        c, _ = client(
            f"http://127.0.0.1:{server.server_address[1]}",
            request_timeout_seconds=0.3,
            boot_wait_seconds=1,
        )
        started = time.monotonic()
        with pytest.raises(ImdsError, match=r"took longer than the request timeout|out of time"):
            c.identity()
        assert time.monotonic() - started < 1 + 5 * 0.3 + 1  # boot_wait + 5 requests, and slack
    finally:
        server.shutdown()
