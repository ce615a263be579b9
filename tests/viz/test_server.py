"""The viewer's HTTP server over real loopback HTTP (no browser needed)."""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from rlm_graph.errors import ConfigurationError
from rlm_graph.viz import ViewerServer, make_server

DATA = Path(__file__).parent / "data"


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def test_serves_the_page_and_its_assets(serve: Any, tmp_path: Path) -> None:
    srv = serve(tmp_path)
    for path, kind in (("", "text/html"), ("app.js", "text/javascript"), ("app.css", "text/css")):
        status, ctype, body = get(srv.url + path)
        assert status == 200 and ctype.startswith(kind) and body
    page = get(srv.url)[2].decode()
    assert 'src="app.js"' in page and 'href="app.css"' in page


def test_the_page_needs_no_network(serve: Any, tmp_path: Path) -> None:
    srv = serve(tmp_path)
    for path in ("", "app.js", "app.css"):
        text = get(srv.url + path)[2].decode()
        # the SVG namespace is a name, not a fetch; nothing else may point off this server
        refs = [u for u in re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", text) if "www.w3.org/2000/svg" not in u]
        assert refs == [], f"{path or 'index.html'} references {refs}"
        assert "@import" not in text and "<link rel=\"preconnect\"" not in text


def test_lists_and_serves_logs_newest_first(serve: Any, tmp_path: Path) -> None:
    import os

    (tmp_path / "old.jsonl").write_text('{"type": "metadata"}\n')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "new.jsonl").write_text('{"type": "metadata", "root_model": "m"}\n')
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "secret.jsonl").write_text("{}\n")
    (tmp_path / "notes.txt").write_text("not a log")
    os.utime(tmp_path / "old.jsonl", (1_000_000, 1_000_000))
    srv = serve(tmp_path)
    listing = json.loads(get(srv.url + "api/logs")[2])
    assert [row["name"] for row in listing["logs"]] == ["sub/new.jsonl", "old.jsonl"]
    assert listing["default"] == "sub/new.jsonl"
    status, _, body = get(srv.url + "api/log?name=sub/new.jsonl")
    assert status == 200 and b'"root_model": "m"' in body


@pytest.mark.parametrize("name", ["../outside.jsonl", "/etc/passwd", ".hidden/secret.jsonl", "notes.txt", "%2e%2e/outside.jsonl"])
def test_nothing_outside_the_listed_logs_is_served(serve: Any, tmp_path: Path, name: str) -> None:
    root = tmp_path / "logs"
    root.mkdir()
    (tmp_path / "outside.jsonl").write_text("{}\n")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "secret.jsonl").write_text("{}\n")
    (root / "notes.txt").write_text("x")
    srv = serve(root)
    status, _, body = get(srv.url + "api/log?name=" + name)
    assert status == 404 and b"no log named" in body
    assert get(srv.url + "../outside.jsonl")[0] == 404


def test_a_single_file_target(serve: Any) -> None:
    srv = serve(DATA / "rlms_reference.jsonl")
    listing = json.loads(get(srv.url + "api/logs")[2])
    assert [row["name"] for row in listing["logs"]] == ["rlms_reference.jsonl"]
    assert get(srv.url + "api/log?name=rlms_reference.jsonl")[0] == 200


def test_default_target_is_logs_then_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    srv = make_server(None, port=0)
    assert srv.target == tmp_path.resolve()
    srv.server_close()
    (tmp_path / "logs").mkdir()
    srv = make_server(None, port=0)
    assert srv.target == (tmp_path / "logs").resolve()
    srv.server_close()


def test_bad_target_and_taken_port_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no log file or directory"):
        make_server(tmp_path / "missing", port=0)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigurationError, match="another --port"):
            make_server(tmp_path, port=taken.getsockname()[1])


def test_serve_blocks_until_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from rlm_graph.viz import server as server_module

    def interrupted(self: ViewerServer, poll_interval: float = 0.5) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(server_module.ViewerServer, "serve_forever", interrupted)
    server_module.serve(tmp_path, port=0)  # returns quietly on Ctrl+C
    assert "rlm-graph viz:" in capsys.readouterr().err
