"""``rlm-graph serve``: the official ``openai`` client against the server, the server against a
scripted model server, both on loopback; runs are real (local sandbox, SQLite checkpoints)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import openai
import pytest
import uvicorn

from rlm_graph import RLM
from rlm_graph.graph.settings import Limits
from rlm_graph.serve import RequestError, ServeSettings, create_app, listen, parse_chat_request
from tests.conftest import repl
from tests.scripted_server import ScriptedServer

COUNT = repl("words = context.split()\nprint('WORDS=%d FIRST=%s' % (len(words), words[0]))")


def answer_from_output(messages: list[dict[str, Any]]) -> str:
    """Turn 0 runs COUNT; turn 1 answers with what the REPL printed (so a wrong context fails)."""
    if not any(m["role"] == "assistant" for m in messages):
        return COUNT
    m = re.search(r"WORDS=(\d+) FIRST=(\S+)", messages[-1]["content"])
    return f"FINAL({m.group(1)} {m.group(2)})" if m else "FINAL(no output)"


@pytest.fixture
def serve(scripted: Any, tmp_path: Path) -> Iterator[Any]:
    """``serve(root, sub=..., settings=..., **rlm_options)`` starts the app on loopback (uvicorn in a thread)."""
    stops: list[Any] = []

    def start(root: Any = answer_from_output, sub: Any = None, *, settings: ServeSettings | None = None, **options: Any) -> Any:
        model = scripted(root, sub)
        options = {"checkpointer": str(tmp_path / "checkpoints.sqlite"), "max_retries": 0, "sandbox_options": {"isolation": "none"}, **options}
        rlm = RLM("scripted", base_url=model.base_url, work_dir=str(tmp_path / "work"), **options)
        app = create_app(rlm, settings or ServeSettings())
        sock = listen("127.0.0.1", 0)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            assert thread.is_alive(), "the server did not start"
            time.sleep(0.01)
        stops.append((server, thread))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        key = settings.api_key if settings and settings.api_key else "none"
        client = openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60)
        return SimpleNamespace(url=url, model=model, rlm=rlm, app=app, client=client)

    yield start
    for server, thread in stops:
        server.should_exit = True
        thread.join(10)


def scripted_usage(model: ScriptedServer) -> dict[str, int]:
    """What the scripted model reported, summed: what the server's usage must add up to."""
    prompt = sum(r["usage"]["prompt_tokens"] for r in model.requests if r.get("usage"))
    completion = sum(r["usage"]["completion_tokens"] for r in model.requests if r.get("usage"))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def meta(obj: Any) -> dict[str, str]:
    """The response's metadata (a declared field of a completion, an extra one of a chunk)."""
    return getattr(obj, "metadata", None) or obj.model_extra["metadata"]


QUESTION = [{"role": "user", "content": "alpha beta gamma delta"}, {"role": "user", "content": "How many words, and which is first?"}]


def test_openai_client_gets_an_answer_with_usage_and_thread_id(serve: Any) -> None:
    s = serve()
    reply = s.client.chat.completions.create(model="rlm-graph", messages=QUESTION)
    assert reply.choices[0].message.content == "4 alpha"  # the earlier message was the context
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"}) == scripted_usage(s.model)
    info = meta(reply)
    assert info["run"] == "new" and info["stopped_by"] == "final"
    saved = s.rlm.result(info["thread_id"])  # a checkpointed run under that thread id
    assert saved.answer == "4 alpha" and saved.stopped_by == "final"
    models = s.client.models.list()
    assert [m.id for m in models.data] == ["rlm-graph"]


def test_streaming_sends_progress_then_the_answer_then_usage(serve: Any) -> None:
    fan_out = repl("parts = llm_query_batched([f'part {w}' for w in context.split()])\nprint('WORDS=%d FIRST=%s' % (len(parts), context.split()[0]))")

    def root(messages: list[dict[str, Any]]) -> str:
        return answer_from_output(messages) if any(m["role"] == "assistant" for m in messages) else fan_out

    s = serve(root)
    chunks = list(s.client.chat.completions.create(model="rlm-graph", messages=QUESTION, stream=True))
    notes = [c.choices[0].delta.model_extra.get("reasoning_content") for c in chunks if c.choices and c.choices[0].delta.model_extra.get("reasoning_content")]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert any("iteration 1" in n for n in notes) and any("4 sub-call(s)" in n for n in notes), notes
    assert any(c.model_extra.get("rlm_progress", {}).get("subcalls_done") == 4 for c in chunks)
    # the answer comes after the progress; the last chunk has no choices and carries usage and the thread id
    assert text == "4 alpha"
    answer_at = next(i for i, c in enumerate(chunks) if c.choices and c.choices[0].delta.content)
    assert all(not (c.choices and c.choices[0].delta.model_extra.get("reasoning_content")) for c in chunks[answer_at:])
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.total_tokens == scripted_usage(s.model)["total_tokens"] > 0
    thread_id = meta(last)["thread_id"]
    assert meta(chunks[0])["thread_id"] == thread_id
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert s.rlm.result(thread_id).subcalls == 4


def test_bearer_key_is_required_when_set(serve: Any) -> None:
    s = serve(settings=ServeSettings(api_key="s3cret"))
    wrong = openai.OpenAI(base_url=s.url, api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="rlm-graph", messages=QUESTION)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    assert s.model.requests == []  # refused before any run
    assert s.client.chat.completions.create(model="rlm-graph", messages=QUESTION).choices[0].message.content == "4 alpha"
    assert httpx.get(s.url.replace("/v1", "/health")).json() == {"status": "ok"}


def test_a_request_cannot_raise_the_server_limits(serve: Any) -> None:
    never_done = repl("print('still looking')")
    s = serve(lambda messages: never_done, max_iterations=2)
    big = s.client.chat.completions.create(model="rlm-graph", messages=QUESTION, extra_body={"limits": {"max_iterations": 50}})
    assert meta(big)["stopped_by"] == "max_iterations"
    assert meta(big)["iterations"] == "2"
    assert big.choices[0].finish_reason == "length"
    small = s.client.chat.completions.create(model="rlm-graph", messages=QUESTION, extra_body={"limits": {"max_iterations": 1}})
    assert meta(small)["iterations"] == "1"
    values = s.rlm.graph.get_state({"configurable": {"thread_id": meta(small)["thread_id"]}}).values
    assert values["limits"]["max_iterations"] == 1
    with pytest.raises(openai.BadRequestError, match="unknown limit"):
        s.client.chat.completions.create(model="rlm-graph", messages=QUESTION, extra_body={"limits": {"max_iterationz": 1}})


def test_context_and_context_path_through_extra_body(serve: Any, tmp_path: Path) -> None:
    root_dir = tmp_path / "docs"
    (root_dir / "sub").mkdir(parents=True)
    (root_dir / "sub" / "a.txt").write_text("one two three")
    (root_dir / "b.md").write_text("four five")
    (tmp_path / "secret.txt").write_text("top secret words")
    (root_dir / "link.txt").symlink_to(tmp_path / "secret.txt")
    show = repl("print('TYPE=%s KEYS=%s' % (type(context).__name__, sorted(context) if isinstance(context, dict) else len(context.split())))")

    def root(messages: list[dict[str, Any]]) -> str:
        if not any(m["role"] == "assistant" for m in messages):
            return show
        return "FINAL(" + re.search(r"TYPE=.*", messages[-1]["content"]).group(0) + ")"

    s = serve(root, settings=ServeSettings(context_roots=(root_dir,)))

    def ask(**extra: Any) -> str:
        reply = s.client.chat.completions.create(model="rlm-graph", messages=[{"role": "user", "content": "what is there?"}], extra_body=extra)
        return reply.choices[0].message.content

    assert ask(context={"x": "1", "y": "2"}) == "TYPE=dict KEYS=['x', 'y']"
    assert ask(context="six seven") == "TYPE=str KEYS=2"
    assert ask(context_path="sub/a.txt") == "TYPE=str KEYS=3"
    assert ask(context_path=str(root_dir / "b.md")) == "TYPE=str KEYS=2"
    assert ask(context_path=".") == "TYPE=dict KEYS=['b.md', 'sub/a.txt']"  # the link leads outside: skipped
    for outside in (str(tmp_path / "secret.txt"), "../secret.txt", "link.txt"):
        with pytest.raises(openai.PermissionDeniedError):
            ask(context_path=outside)
    with pytest.raises(openai.NotFoundError):
        ask(context_path="missing.txt")
    with pytest.raises(openai.BadRequestError, match="not both"):
        ask(context="x", context_path="sub/a.txt")
    nowhere = serve(root)  # a server with no roots takes no paths at all
    with pytest.raises(openai.PermissionDeniedError, match="context-root"):
        nowhere.client.chat.completions.create(model="rlm-graph", messages=QUESTION, extra_body={"context_path": "sub/a.txt"})


def test_thread_id_resumes_a_failed_run_and_answers_follow_ups(serve: Any) -> None:
    fail = {"on": True}

    def root(messages: list[dict[str, Any]]) -> Any:
        turns = sum(1 for m in messages if m["role"] == "assistant")
        if turns == 1 and fail["on"]:
            return {"status": 500, "body": {"error": {"message": "the model is down"}}}
        if "follow-up" in messages[-1]["content"].lower() or "new question" in messages[-1]["content"]:
            return "FINAL(follow-up answer)"
        return answer_from_output(messages)

    s = serve(root)
    with pytest.raises(openai.InternalServerError) as failed:
        s.client.chat.completions.create(model="rlm-graph", messages=QUESTION, extra_body={"thread_id": "run-1"})
    assert failed.value.status_code == 502 and failed.value.body["thread_id"] == "run-1"
    fail["on"] = False
    before = Counter(r["turn"] for r in s.model.root_requests() if r["status"] == 200)
    resumed = s.client.chat.completions.create(model="rlm-graph", messages=QUESTION, extra_body={"thread_id": "run-1"})
    assert resumed.choices[0].message.content == "4 alpha" and meta(resumed)["run"] == "resumed"
    after = Counter(r["turn"] for r in s.model.root_requests() if r["status"] == 200)
    assert after - before == Counter({1: 1})  # only the turn that had failed was asked again
    calls = len(s.model.requests)
    again = s.client.chat.completions.create(model="rlm-graph", messages=QUESTION, extra_body={"thread_id": "run-1"})
    assert again.choices[0].message.content == "4 alpha" and meta(again)["run"] == "saved"
    assert len(s.model.requests) == calls  # the saved answer: no model call
    # a chat client resends the whole conversation: the earlier messages are its history, not a new context
    history = [*QUESTION, {"role": "assistant", "content": "4 alpha"}, {"role": "user", "content": "a new question"}]
    follow = s.client.chat.completions.create(model="rlm-graph", messages=history, extra_body={"thread_id": "run-1"})
    assert follow.choices[0].message.content == "follow-up answer" and meta(follow)["run"] == "follow_up"
    with pytest.raises(openai.BadRequestError, match="already has its context"):
        s.client.chat.completions.create(model="rlm-graph", messages=[{"role": "user", "content": "third"}], extra_body={"thread_id": "run-1", "context": "other"})


def test_bad_requests_get_one_clear_error(serve: Any) -> None:
    s = serve()
    post = lambda body, **kw: httpx.post(s.url + "/chat/completions", json=body, **kw)  # noqa: E731
    cases = [
        ({"model": "rlm-graph"}, 400, "'messages' must be a non-empty list"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, 400, "last message must be the user's question"),
        ({"messages": [{"role": "user", "content": "  "}]}, 400, "is empty"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, "only text content parts"),
        ({"model": "gpt-4o", "messages": QUESTION}, 404, "does not exist"),
        ({"messages": QUESTION, "thread_id": "../../etc"}, 400, "'thread_id' must be"),
        ({"messages": QUESTION, "limits": {"max_iterations": "many"}}, 400, "must be a number"),
        ({"messages": QUESTION, "limits": {"max_iterations": 0}}, 400, "must be positive"),
        ({"messages": QUESTION, "context": 42}, 400, "'context' must be"),
        ({"messages": QUESTION, "stream": "yes"}, 400, "'stream' must be"),
    ]
    for body, status, message in cases:
        r = post(body)
        assert r.status_code == status and message in r.json()["error"]["message"], (body, r.text)
    r = httpx.post(s.url + "/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    assert s.model.requests == []


def test_parse_caps_every_limit_and_keeps_unlimited_ones() -> None:
    server = Limits(max_iterations=10, max_depth=1, max_tokens=None)
    body = {"messages": QUESTION, "limits": {"max_iterations": 99, "max_depth": 0, "max_tokens": 5000}}
    req = parse_chat_request(body, model_id="m", server_limits=server, roots=())
    assert req.limits == {"max_iterations": 10, "max_depth": 0, "max_tokens": 5000}
    assert req.context == "alpha beta gamma delta" and req.question == "How many words, and which is first?"
    with pytest.raises(RequestError, match="not both"):
        parse_chat_request({**body, "context": "x", "context_path": "y"}, model_id="m", server_limits=server, roots=())


def test_cli_refuses_an_open_host_without_a_key() -> None:
    out = subprocess.run([sys.executable, "-m", "rlm_graph.cli", "serve", "--host", "0.0.0.0", "--port", "0"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "RLM_GRAPH_SERVE_KEY": ""})
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--api-key" in out.stderr, out.stderr


def _start_cli(model_url: str, tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlm_graph.cli", "serve", "--port", "0", "--model", "scripted", "--base-url", model_url,
         "--retries", "0", "--isolation", "none", "--work-dir", str(tmp_path / "work"), "--api-key", "k"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    m = re.search(r"listening on (http://\S+/v1)", line)
    assert m, line + (proc.stderr.read() if proc.poll() is not None else "")
    return proc, m.group(1)


def test_a_run_cut_off_by_a_server_restart_is_resumed_by_naming_its_thread(tmp_path: Path) -> None:
    """``rlm-graph serve`` in a subprocess, SIGKILLed mid-run; a new server carries the run on."""
    state: dict[str, Any] = {"proc": None, "kill_turn": 1}

    def root(messages: list[dict[str, Any]]) -> str:
        turns = sum(1 for m in messages if m["role"] == "assistant")
        if turns == state["kill_turn"] and state["proc"] is not None:
            state["kill_turn"] = None
            os.kill(state["proc"].pid, signal.SIGKILL)
            time.sleep(0.3)
        return answer_from_output(messages)

    model = ScriptedServer(root).start()
    try:
        proc, url = _start_cli(model.base_url, tmp_path)
        state["proc"] = proc
        client = openai.OpenAI(base_url=url, api_key="k", max_retries=0, timeout=60)
        thread_id = None
        with pytest.raises((openai.APIConnectionError, httpx.RemoteProtocolError, httpx.ReadError)):
            for chunk in client.chat.completions.create(model="rlm-graph", messages=QUESTION, stream=True):
                thread_id = thread_id or meta(chunk)["thread_id"]
        assert proc.wait(30) == -signal.SIGKILL and thread_id
        proc2, url2 = _start_cli(model.base_url, tmp_path)
        try:
            client2 = openai.OpenAI(base_url=url2, api_key="k", max_retries=0, timeout=60)
            reply = client2.chat.completions.create(model="rlm-graph", messages=QUESTION, extra_body={"thread_id": thread_id})
            assert reply.choices[0].message.content == "4 alpha"
            assert meta(reply) == {**meta(reply), "run": "resumed", "thread_id": thread_id}
        finally:
            proc2.send_signal(signal.SIGINT)
            proc2.wait(30)
        finished = Counter(r["turn"] for r in model.root_requests() if r.get("delivered"))
        assert finished == Counter({0: 1, 1: 1}), finished  # turn 0 was saved before the kill: not asked again
    finally:
        if state["proc"] and state["proc"].poll() is None:
            state["proc"].kill()
        model.stop()


def test_a_bad_stream_request_is_refused_before_the_stream_starts(serve: Any) -> None:
    s = serve()
    with httpx.stream("POST", s.url + "/chat/completions", json={"messages": QUESTION, "stream": True, "context_path": "x"}) as r:
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/json")
        assert "context-root" in json.loads(r.read())["error"]["message"]
