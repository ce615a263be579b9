"""Context sources: standard input, a folder, a SQLite query and a PostgreSQL query (the local
server at 127.0.0.1:5432), read by ``open_source`` and used by ``rlm-graph run`` and ``RLM``."""

from __future__ import annotations

import ast
import io
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rlm_graph import RLM
from rlm_graph.contexts import open_source, split_query_url
from rlm_graph.errors import ContextError
from tests.conftest import repl

POSTGRES = os.environ.get("RLM_GRAPH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SHOW = repl("import json\nprint('CTX=' + (context.splitlines()[0] if isinstance(context, str) else json.dumps(context, sort_keys=True)))")


def echo_context(messages: list[dict[str, Any]]) -> str:
    """Turn 0 prints the context as the sandbox sees it; turn 1 answers with that line."""
    if not any(m["role"] == "assistant" for m in messages):
        return SHOW
    m = re.search(r"CTX=(.*)", messages[-1]["content"])
    return f"FINAL({m.group(1) if m else 'nothing'})"


def run_cli(model_url: str, context: str, *, stdin: str | None = None, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rlm_graph.cli", "run", "--context", context, "--query", "what is it?", "--model", "scripted",
         "--base-url", model_url, "--retries", "0", "--isolation", "none", "--checkpoint", "none"],
        input=stdin if stdin is not None else "", capture_output=True, text=True, timeout=120, cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )


# -- standard input ----------------------------------------------------------------------------

def test_stdin_is_the_context_on_the_command_line(scripted: Any, tmp_path: Path) -> None:
    model = scripted(echo_context)
    out = run_cli(model.base_url, "-", stdin="piped text\nsecond line\n", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "piped text"  # the context's first line, printed in the sandbox


def test_empty_or_terminal_stdin_is_one_clear_error(scripted: Any, tmp_path: Path) -> None:
    model = scripted(echo_context)
    out = run_cli(model.base_url, "-", stdin="  \n", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip() == "rlm-graph: error: standard input is empty: nothing to use as the context"
    assert model.requests == []

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with pytest.raises(ContextError, match="it is a terminal"):
        open_source("-", stdin=Terminal("x"))
    assert open_source("-", stdin=io.StringIO("abc")).value == "abc"


# -- folders -----------------------------------------------------------------------------------

def make_folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    (docs / "notes").mkdir(parents=True)
    (docs / ".git").mkdir()
    (docs / "a.txt").write_text("alpha")
    (docs / "notes" / "b.md").write_text("beta\n")
    (docs / "notes" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    (docs / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (docs / ".env").write_text("SECRET=1")
    (docs / ".git" / "HEAD").write_text("ref")
    (tmp_path / "outside.txt").write_text("not in the folder")
    (docs / "link.txt").symlink_to(tmp_path / "outside.txt")
    return docs


def test_a_folder_is_a_dict_of_relative_paths_with_binaries_skipped_and_listed(tmp_path: Path) -> None:
    source = open_source(make_folder(tmp_path))
    assert source.value == {"a.txt": "alpha", "notes/b.md": "beta\n"}
    assert source.skipped == ["latin1.txt", "link.txt", "notes/logo.png"]
    assert source.path is None


def test_a_folder_on_the_command_line_and_through_rlm(scripted: Any, tmp_path: Path) -> None:
    docs = make_folder(tmp_path)
    model = scripted(echo_context)
    out = run_cli(model.base_url, str(docs), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert ast.literal_eval(out.stdout) == {"a.txt": "alpha", "notes/b.md": "beta\n"}
    assert "skipped 3 binary or unreadable file(s): latin1.txt, link.txt, notes/logo.png" in out.stderr
    rlm = RLM("scripted", base_url=scripted(echo_context).base_url, checkpointer=False, sandbox_options={"isolation": "none"})
    assert ast.literal_eval(rlm.completion(str(docs), "what?").answer or "") == {"a.txt": "alpha", "notes/b.md": "beta\n"}


def test_a_folder_with_no_text_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "x.bin").write_bytes(b"\x00\x01")
    with pytest.raises(ContextError, match=r"has no text files \(1 binary or unreadable file\(s\) skipped\)"):
        open_source(tmp_path / "bin")


# -- SQL ---------------------------------------------------------------------------------------

def make_db(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE sales (region TEXT, amount REAL, n INTEGER, note BLOB)")
        conn.executemany("INSERT INTO sales VALUES (?, ?, ?, ?)", [("north", 10.5, 1, None), ("south", 3.0, 2, b"\x00\x01"), ("east", 7.25, 3, None)])
    conn.close()


def test_sqlite_query_rows_as_dicts_plain_or_url_encoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_db(tmp_path / "shop.db")
    monkeypatch.chdir(tmp_path)
    rows = open_source("sqlite:///shop.db?query=SELECT region, amount FROM sales WHERE amount > 5 ORDER BY amount").value
    assert rows == [{"region": "east", "amount": 7.25}, {"region": "north", "amount": 10.5}]
    encoded = open_source(f"sqlite:///{tmp_path / 'shop.db'}?query=SELECT%20n%2C%20note%20FROM%20sales%20WHERE%20region%3D%27south%27").value
    assert encoded == [{"n": 2, "note": "<2 bytes>"}]
    # a plain query keeps its % and & as they are
    assert open_source("sqlite:///shop.db?query=SELECT region FROM sales WHERE region LIKE '%th' AND 1=1").value == [{"region": "north"}, {"region": "south"}]


def test_sqlite_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_db(tmp_path / "shop.db")
    monkeypatch.chdir(tmp_path)
    cases = {
        "sqlite:///missing.db?query=SELECT 1": "SQLite database not found: missing.db",
        "sqlite:///shop.db": "sqlite context needs a query: add ?query=SELECT ... to the URL",
        "sqlite:///shop.db?query=": "the context URL's query is empty",
        "sqlite:///shop.db?query=SELECT nope FROM sales": "SQLite query on shop.db failed: no such column: nope",
        "sqlite:///shop.db?query=SELECT * FROM sales WHERE n > 99": "the context query returned no rows",
        "sqlite:///shop.db?query=DELETE FROM sales": "attempt to write a readonly database",
        "sqlite://shop.db?query=SELECT 1": "a SQLite context is sqlite:///relative/file.db",
    }
    for url, message in cases.items():
        with pytest.raises(ContextError) as err:
            open_source(url)
        assert message in str(err.value) and "\n" not in str(err.value), (url, str(err.value))
    with sqlite3.connect(tmp_path / "shop.db") as conn:
        assert conn.execute("SELECT count(*) FROM sales").fetchone() == (3,)  # the DELETE did not run
    conn.close()


def test_sqlite_on_the_command_line(scripted: Any, tmp_path: Path) -> None:
    make_db(tmp_path / "shop.db")
    model = scripted(echo_context)
    out = run_cli(model.base_url, "sqlite:///shop.db?query=SELECT region, n FROM sales ORDER BY n", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert ast.literal_eval(out.stdout) == [{"n": 1, "region": "north"}, {"n": 2, "region": "south"}, {"n": 3, "region": "east"}]
    bad = run_cli(model.base_url, "sqlite:///shop.db?query=SELEC 1", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("rlm-graph: error: SQLite query on shop.db failed: near \"SELEC\"")


@pytest.fixture
def pg_table() -> Any:
    table = f"rlm_sources_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int, name text, price numeric(6,2), seen date, tags text[])")
        conn.execute(f"INSERT INTO {table} VALUES (1, 'pen', 1.50, '2026-01-02', ARRAY['a','b']), (2, 'ink', 12.00, NULL, NULL)")
    yield table
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


def test_postgres_query_rows_as_json_ready_dicts(pg_table: str) -> None:
    rows = open_source(f"{POSTGRES}?query=SELECT * FROM {pg_table} ORDER BY id").value
    assert rows == [
        {"id": 1, "name": "pen", "price": 1.5, "seen": "2026-01-02", "tags": ["a", "b"]},
        {"id": 2, "name": "ink", "price": 12, "seen": None, "tags": None},
    ]
    conn_url, sql = split_query_url(f"{POSTGRES}?connect_timeout=5&query=SELECT 1")
    assert (conn_url, sql) == (f"{POSTGRES}?connect_timeout=5", "SELECT 1")


def test_postgres_is_read_only_and_errors_are_one_line(pg_table: str) -> None:
    with pytest.raises(ContextError, match="read-only transaction"):
        open_source(f"{POSTGRES}?query=DELETE FROM {pg_table} RETURNING id")
    with psycopg.connect(POSTGRES) as conn:
        assert conn.execute(f"SELECT count(*) FROM {pg_table}").fetchone() == (2,)
    with pytest.raises(ContextError, match=f'PostgreSQL query on 127.0.0.1:5432/test failed: relation "{pg_table}_nope" does not exist'):
        open_source(f"{POSTGRES}?query=SELECT * FROM {pg_table}_nope")
    with pytest.raises(ContextError, match="postgresql context needs a query"):
        open_source(POSTGRES)
    with pytest.raises(ContextError, match="PostgreSQL query on 127.0.0.1:1/test failed"):
        open_source("postgresql://postgres@127.0.0.1:1/test?query=SELECT 1")


def test_postgres_through_rlm(scripted: Any, pg_table: str) -> None:
    rlm = RLM("scripted", base_url=scripted(echo_context).base_url, checkpointer=False, sandbox_options={"isolation": "none"})
    answer = rlm.completion(f"{POSTGRES}?query=SELECT name FROM {pg_table} ORDER BY id", "names?").answer
    assert ast.literal_eval(answer or "") == [{"name": "pen"}, {"name": "ink"}]
