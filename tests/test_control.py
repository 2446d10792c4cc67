"""The control socket: one JSON line per request, raw bytes after a length, local users only."""
from __future__ import annotations

import json
import socket
import stat
import threading
import time

import pytest

from mask_guard import control
from mask_guard.config import Config


def serve(path, **handlers) -> control.ControlServer:
    srv = control.ControlServer(path, handlers)
    srv.start()
    return srv


def test_status_round_trip_and_a_large_binary_reply(tmp_path):
    payload = bytes(range(256)) * 8000  # 2 MB, more than any socket buffer
    srv = serve(tmp_path / "c.sock", status=lambda req: ({"state": "running", "echo": req}, None),
                snapshot=lambda req: ({"content_type": "image/jpeg"}, payload))
    try:
        reply, data = control.request(tmp_path / "c.sock", "status", extra=1)
        assert reply == {"state": "running", "echo": {"cmd": "status", "extra": 1}, "ok": True} and data is None
        reply, data = control.request(tmp_path / "c.sock", "snapshot")
        assert reply["length"] == len(payload) and data == payload
        assert srv.requests == 2
    finally:
        srv.close()


def test_bad_requests_get_an_error_reply_and_the_server_keeps_answering(tmp_path):
    path = tmp_path / "c.sock"
    srv = serve(path, status=lambda req: ({"fine": True}, None), boom=lambda req: 1 / 0)
    try:
        for raw in (b"not json\n", b"[1, 2]\n", b'{"nocmd": 1}\n', b"x" * 10000):
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(path))
                s.sendall(raw)
                s.shutdown(socket.SHUT_WR)
                reply = s.makefile("rb").readline()
            if reply:  # an oversize request may just be dropped
                assert json.loads(reply)["ok"] is False
        assert control.request(path, "frobnicate")[0]["error"].startswith("unknown command 'frobnicate'")
        assert "division by zero" in control.request(path, "boom")[0]["error"]
        with socket.socket(socket.AF_UNIX) as s:  # a client that connects and says nothing...
            s.connect(str(path))
            t0 = time.monotonic()
            assert control.request(path, "status", timeout=10)[0] == {"fine": True, "ok": True}
            assert time.monotonic() - t0 < 1.0, "...does not hold up the others"
    finally:
        srv.close()


def test_socket_is_private_to_owner_and_group_and_removed_on_close(tmp_path):
    path = tmp_path / "c.sock"
    srv = serve(path, status=lambda req: ({}, None))
    st = path.lstat()
    srv.close()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    assert not path.exists()


def test_a_stale_socket_is_replaced_but_a_live_one_is_not_stolen(tmp_path):
    path = tmp_path / "c.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a killed run left the file behind
    srv = serve(path, status=lambda req: ({"n": 1}, None))
    try:
        with pytest.raises(OSError, match="another mask-guard already listens"):
            serve(path, status=lambda req: ({"n": 2}, None))
        assert control.request(path, "status")[0]["n"] == 1
    finally:
        srv.close()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match="not a socket"):
        serve(tmp_path / "file")


def test_clients_find_the_service_socket_and_report_not_running(tmp_path, monkeypatch):
    for k in ("RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(k, raising=False)
    cfg = Config()
    assert control.socket_candidates(cfg)[0] == control.Path("/run/mask-guard/control.sock")
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run"))
    assert control.default_socket_path(cfg) == tmp_path / "run" / "control.sock"
    cfg.service.control_socket = str(tmp_path / "x.sock")
    assert control.socket_candidates(cfg) == [tmp_path / "x.sock"]
    with pytest.raises(control.NotRunning, match="not running"):
        control.ask(cfg, "status")
    srv = serve(tmp_path / "x.sock", status=lambda req: ({"up": True}, None))
    try:
        reply, _, where = control.ask(cfg, "status")
        assert reply["up"] and where == tmp_path / "x.sock"
    finally:
        srv.close()


def test_requests_from_several_threads_are_all_answered(tmp_path):
    path = tmp_path / "c.sock"
    srv = serve(path, status=lambda req: ({"i": req["i"]}, None))
    got, errors = [], []

    def ask(i):
        try:
            got.append(control.request(path, "status", i=i)[0]["i"])
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(20)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    finally:
        srv.close()
    assert not errors and sorted(got) == list(range(20))
