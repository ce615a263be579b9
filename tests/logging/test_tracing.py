"""LangSmith tracing against a local fake endpoint: on with LANGSMITH_TRACING=true, silent otherwise.

Each run happens in a fresh process, because the LangSmith client reads its settings once.
"""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import repl

ROOT = Path(__file__).resolve().parents[2]


class FakeLangSmith:
    """``GET /info`` answers ``{}``; run uploads (multipart or batch) are accepted and kept."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path, dict(self.headers), b""))
                self._reply(200, {})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append(("POST", self.path, dict(self.headers), body))
                self._reply(202, {})

            do_PATCH = do_POST

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def runs(self) -> dict[str, dict[str, Any]]:
        """Every run posted or patched, by id, with its fields merged."""
        runs: dict[str, dict[str, Any]] = {}
        for method, path, headers, body in self.requests:
            if method != "POST":
                continue
            if path.startswith("/runs/multipart"):
                head = f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode()
                for part in email.message_from_bytes(head + body, policy=policy.HTTP).iter_parts():
                    name = str(part.get_param("name", header="content-disposition"))
                    _, _, rest = name.partition(".")
                    run_id, _, field = rest.partition(".")
                    data = json.loads(part.get_payload(decode=True))
                    entry = runs.setdefault(run_id, {})
                    if field:
                        entry[field] = data
                    else:
                        entry.update(data)
            elif path.startswith("/runs/batch"):
                batch = json.loads(body)
                for run in (batch.get("post") or []) + (batch.get("patch") or []):
                    runs.setdefault(str(run["id"]), {}).update(run)
        return runs

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_langsmith() -> Iterator[FakeLangSmith]:
    fake = FakeLangSmith()
    yield fake
    fake.close()


def run_traced(base_url: str, endpoint: str, cwd: Path, tracing: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "LANGCHAIN_"))}
    env.update(LANGSMITH_ENDPOINT=endpoint, LANGSMITH_API_KEY="fake-key", PYTHONPATH=str(ROOT))
    if tracing is not None:
        env["LANGSMITH_TRACING"] = tracing
    return subprocess.run(
        [sys.executable, "-m", "tests.logging.trace_runner", base_url],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )


SCRIPT = [
    repl("n = rlm_query('count these', context=context)\nok = llm_query('is 4 small?')\nprint(n, ok)"),
    repl("print(len(context.split()))"),  # the child
    'FINAL("4")',  # the child
    "FINAL(n)",
]


def test_runs_are_traced_by_node_with_sub_calls_nested(scripted: Any, fake_langsmith: FakeLangSmith, tmp_path: Path) -> None:
    srv = scripted(SCRIPT, sub=lambda p: "yes")
    proc = run_traced(srv.base_url, fake_langsmith.url, tmp_path, "true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "4"
    runs = fake_langsmith.runs()
    assert runs, f"nothing reached the fake endpoint: {[r[:2] for r in fake_langsmith.requests]}"
    by_id = {rid: r for rid, r in runs.items() if "name" in r}
    names = {r["name"] for r in by_id.values()}
    assert {"prepare", "generate", "execute", "recurse", "sub_call", "check_final"} <= names

    def parent(r: dict[str, Any]) -> dict[str, Any]:
        return by_id.get(str(r.get("parent_run_id")), {})

    def ancestors(r: dict[str, Any]) -> list[str]:
        out = []
        while r.get("parent_run_id"):
            r = parent(r)
            out.append(r.get("name", "?"))
        return out

    # the root model's calls sit under generate; sub-model calls under sub_call
    llm_runs = [r for r in by_id.values() if r.get("run_type") == "llm"]
    assert {parent(r).get("name") for r in llm_runs} >= {"generate", "sub_call"}
    # the child RLM is a graph run inside a sub_call, and its own nodes inside it
    graphs = [r for r in by_id.values() if r.get("run_type") == "chain" and not r.get("parent_run_id")]
    assert len(graphs) == 1
    child_generates = [r for r in by_id.values() if r["name"] == "generate" and "sub_call" in ancestors(r)]
    assert child_generates, "the child RLM's turns are not nested under its sub_call"
    child_graph = parent(child_generates[0])
    assert parent(child_graph).get("name") == "sub_call"

    # named by depth (needs the run config of docs/observability.md, 'Wiring')
    depth_of = {rid: ((r.get("extra") or {}).get("metadata") or {}).get("rlm_depth") for rid, r in by_id.items()}
    if graphs[0]["name"] != "rlm depth 0":
        pytest.xfail("the runs carry no depth: rlm_graph/rlm.py and nodes/sub_call.py do not pass trace_config yet")
    assert child_graph["name"] == "rlm depth 1"
    assert depth_of[next(rid for rid, r in by_id.items() if r is child_generates[0])] == 1
    root_generates = [rid for rid, r in by_id.items() if r["name"] == "generate" and "sub_call" not in ancestors(r)]
    assert root_generates and all(depth_of[rid] == 0 for rid in root_generates)


@pytest.mark.parametrize("tracing", [None, "false"])
def test_no_network_attempt_when_tracing_is_off(scripted: Any, fake_langsmith: FakeLangSmith, tmp_path: Path, tracing: str | None) -> None:
    srv = scripted(SCRIPT, sub=lambda p: "yes")
    proc = run_traced(srv.base_url, fake_langsmith.url, tmp_path, tracing)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "4"
    assert fake_langsmith.requests == []
