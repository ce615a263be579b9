"""rlm_graph.validation: numbers in range for the CLI, the API and a run's JSON context; text that
every checkpointer can store; context paths that cannot hang the CLI (docs/reliability.md)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest

from rlm_graph import RLM, ConfigurationError, Limits, RLMContext
from rlm_graph.validation import RANGES, check_number, check_setting, safe_text, safe_value
from tests.conftest import repl

POSTGRES = os.environ.get("RLM_GRAPH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


# -- numbers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1, "7", True, None])
@pytest.mark.parametrize("name", ["cell_timeout", "max_seconds", "max_cost_usd", "max_iterations", "timeout"])
def test_every_number_is_finite_and_in_range(name: str, bad: Any) -> None:
    with pytest.raises(ConfigurationError, match=f"^{name} must be "):
        check_setting(name, bad)


def test_ranges_whole_numbers_and_messages() -> None:
    assert check_number("n", 5.0, minimum=1, maximum=10, integer=True) == 5 and isinstance(check_number("n", 5.0, minimum=1, maximum=10, integer=True), int)
    with pytest.raises(ConfigurationError, match=r"^max_iterations must be positive and at most 100,000, got 1e\+20$"):
        Limits(max_iterations=1e20)
    with pytest.raises(ConfigurationError, match=r"^max_iterations must be a whole number, got 2.5$"):
        Limits(max_iterations=2.5)
    with pytest.raises(ConfigurationError, match=r"^max_output_chars must be at least 200"):
        Limits(max_output_chars=5)
    assert Limits(max_subcalls=None).max_subcalls is None and Limits(max_depth=0).max_depth == 0
    assert set(RANGES) >= set(Limits.__dataclass_fields__)  # every limit has its range


@pytest.mark.parametrize(
    "limits",
    [{"cell_timeout": math.nan}, {"max_seconds": math.nan}, {"max_cost_usd": math.nan}, {"cell_timeout": math.inf},
     {"max_iterations": 1e20}],
)
def test_the_api_and_a_runs_json_context_refuse_the_same_numbers(limits: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RLM("m", base_url="http://127.0.0.1:9/v1", checkpointer=False, **limits)
    with pytest.raises(ConfigurationError):
        RLMContext(**{"limits": limits})  # what LangGraph builds from a run's context over HTTP
    with pytest.raises(ConfigurationError, match="timeout must be positive"):
        RLM("m", base_url="http://127.0.0.1:9/v1", checkpointer=False, timeout=-1)
    with pytest.raises(ConfigurationError, match=r"prices\['m'\] input must be a finite number"):
        RLMContext(prices={"m": (math.nan, 1.0)})


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the real ``rlm-graph`` entry point in this process: (exit code, stdout, stderr)."""
    from rlm_graph.cli import main

    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse: --help, or a flag it cannot parse
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--cell-timeout", "nan", "cell_timeout must be a finite number, got nan"),
        ("--max-seconds", "nan", "max_seconds must be a finite number, got nan"),
        ("--max-cost-usd", "nan", "max_cost_usd must be a finite number, got nan"),
        ("--cell-timeout", "inf", "cell_timeout must be a finite number, got inf"),
        ("--max-iterations", "100000000000000000000", "max_iterations must be positive and at most 100,000, got 100000000000000000000"),
        ("--timeout", "-1", "--timeout must be positive and at most 86,400, got -1.0"),
        ("--retries", "-3", "--retries must be at least 0 and at most 100, got -3"),
    ],
)
def test_the_cli_refuses_bad_numbers_with_one_line_and_exit_2(
    scripted: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    (tmp_path / "ok.txt").write_text("fine")
    srv = scripted([])
    code, out, err = cli(capsys, "run", "--context", "ok.txt", "--query", "q", "--model", "m", "--base-url", srv.base_url, flag, value)
    assert code == 2 and err.strip() == f"rlm-graph: error: {message}"
    assert out == "" and srv.requests == []


def test_max_subcalls_defaults_to_1000_in_every_run_that_sets_no_limit(rlm_for: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # The fast half of the default's test (the 1,000-call loop below is marked slow): a run that
    # sets no limit carries 1,000 into the budget its ledger enforces, and says so in --help;
    # tests/test_recursion_and_limits.py::test_max_subcalls_refuses_the_request_and_ends_the_run
    # shows the ledger refusing at the limit.
    assert Limits().max_subcalls == 1000
    rlm, srv = rlm_for([repl("print(llm_query('one'))"), 'FINAL("done")'], checkpointer=None, work_dir="w")
    result = rlm.completion("ctx", "q", thread_id="t")
    assert result.limits["max_subcalls"] == 1000 and result.subcalls == 1 == len(srv.sub_requests())
    saved = rlm.graph.get_state({"configurable": {"thread_id": "t"}}).values
    assert saved["limits"]["max_subcalls"] == 1000 and saved["manifest"]["limits"]["max_subcalls"] == 1000
    _, help_text, _ = cli(capsys, "run", "--help")
    assert "default 1000" in help_text and "'none' for no limit" in help_text


@pytest.mark.slow  # 1,000 real sub-calls through the graph: 12 to 100 s on a busy 2-core machine (make test-slow)
def test_max_subcalls_has_a_default_that_stops_a_runaway_loop(rlm_for: Any) -> None:
    loop = "n = 0\nwhile True:\n    llm_query_batched([f'again {n}.{i}' for i in range(100)])\n    n += 1"
    rlm, srv = rlm_for([repl(loop), 'FINAL("stopped")'])
    result = rlm.completion("ctx", "q")
    assert len(srv.sub_requests()) == 1000 and result.subcalls == 1000
    assert result.stopped_by == "max_subcalls"


# -- text bound for a checkpoint ---------------------------------------------------------------
def test_safe_text_replaces_nul_and_lone_surrogates_only() -> None:
    clean = "plain ascii and \u00e9\u65e5\U0001f600"
    assert safe_text(clean) is clean
    assert safe_text("a\x00b") == "a\ufffdb" and safe_text("\ud800x\udfff\x00") == "\ufffdx\ufffd\ufffd"
    value = {"k\x00": ["ok", ("t\ud800",)], "n": 1}
    assert safe_value(value) == {"k\ufffd": ["ok", ("t\ufffd",)], "n": 1}
    untouched = {"a": ["b", {"c": "d"}]}
    assert safe_value(untouched) is untouched


def test_a_final_answer_with_nul_is_saved_by_postgres(scripted: Any) -> None:
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(POSTGRES, connect_timeout=3).close()
    except psycopg.OperationalError:
        pytest.skip("no PostgreSQL server reachable at 127.0.0.1:5432 (set RLM_GRAPH_TEST_POSTGRES)")
    from rlm_graph.checkpoints import list_runs

    srv = scripted([repl("x = 'in code ' + chr(0)\nprint(x)"), "FINAL(nul \x00 in the \ud800 text)"])
    rlm = RLM("scripted", base_url=srv.base_url, max_retries=0, checkpointer=POSTGRES)
    thread = f"nul-{os.getpid()}-{os.urandom(4).hex()}"
    result = rlm.completion("ctx", "a question with NUL \x00", thread_id=thread)
    assert result.answer == "nul \ufffd in the \ufffd text" and result.stopped_by == "final"
    row = next(r for r in list_runs(rlm.checkpointer) if r["thread_id"] == thread)
    assert row["status"] == "finished"
    values = rlm.graph.get_state({"configurable": {"thread_id": thread}}).values
    assert values["cells"][0]["stdout"] == "in code \ufffd\n" and values["query"] == "a question with NUL \ufffd"


# -- context paths -----------------------------------------------------------------------------
@pytest.mark.timeout(60)  # the CLI used to wait for a writer forever
def test_a_fifo_as_context_is_refused_not_waited_on(scripted: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    srv = scripted([])
    code, _, err = cli(capsys, "run", "--context", str(fifo), "--query", "q", "--model", "m", "--base-url", srv.base_url)
    assert code == 2
    assert err.strip() == f"rlm-graph: error: context path is not a regular file (a FIFO, a socket or a device): {fifo}"
    assert srv.requests == []
