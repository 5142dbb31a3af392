from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import structlog

from cockpit_agent.host.systemd import sd_notify
from cockpit_agent.log import JournalRenderer, configure


def test_sd_notify_without_socket_is_a_no_op() -> None:
    assert sd_notify("STATUS=x", env={}) is False


def test_sd_notify_fallback_sends_a_datagram(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        assert sd_notify("STATUS=storage: creating array", env={"NOTIFY_SOCKET": str(path)})
        assert server.recv(1024) == b"STATUS=storage: creating array"


def test_sd_notify_to_a_dead_socket_reports_false(tmp_path: Path) -> None:
    assert sd_notify("STATUS=x", env={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False


def test_journal_renderer_sets_step_and_action_fields() -> None:
    sent: list[tuple[str, dict[str, str]]] = []

    def send(message: str, **fields: str) -> None:
        sent.append((message, fields))

    renderer = JournalRenderer(send)
    with pytest.raises(structlog.DropEvent):
        renderer(None, "warning", {"event": "applying", "step": "storage", "action": "CreateArray"})
    message, fields = sent[0]
    assert json.loads(message)["event"] == "applying"
    assert fields["STEP"] == "storage" and fields["ACTION"] == "CreateArray"
    assert fields["PRIORITY"] == "4"


def test_json_logs_when_not_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    configure("json")
    structlog.get_logger("t").info("step finished", step="rootfs", status="converged")
    line: dict[str, Any] = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "step finished" and line["step"] == "rootfs"
    assert line["level"] == "info" and "timestamp" in line


def test_text_logs_are_readable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    configure("text")
    structlog.get_logger("t").info("step finished", step="rootfs")
    err = capsys.readouterr().err
    assert "step finished" in err and "step=rootfs" in err
    assert not err.lstrip().startswith("{")
