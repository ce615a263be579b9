"""Counting over logs: how many lines have a given level, service or HTTP status (one or two conditions).

Generators: ``level`` (errors or warnings), ``level_service`` (errors or warnings of one service), ``status``
(access-log requests with a status code or any 5xx, alone or with a method or a path). Shapes: ``text`` (one
string of lines), ``list`` (a list of line strings), ``records`` (a list of dicts). The line format is drawn per
task: ``iso`` (``2024-05-03T10:22:41Z ERROR payments: ...``), ``bracket`` (``[...] [Err] Payments - ...``),
``logcat`` (``05-03 10:22:41.123 E payments: ...``), ``kv`` (``level=error service=payments msg="..."``),
``syslog`` (``May 03 10:22:41 web-3 payments[4121]: ERR ...``). The question says "errors" or "warnings" and
writes the service in another case or with "service" after it; messages at other levels mention errors
("retry succeeded after an earlier error") and other services, so matching the word is not counting the level.
"""

from __future__ import annotations

import random
from typing import Any

from rlm_graph.bench.families.spec import Built, Family, ask
from rlm_graph.bench.tasks import Context

LEVELS = ("error", "warning", "info", "debug")
#: style -> level tokens, in LEVELS order
TOKENS: dict[str, tuple[str, ...]] = {
    "iso": ("ERROR", "WARN", "INFO", "DEBUG"), "bracket": ("Err", "Warn", "Info", "Debug"),
    "logcat": ("E", "W", "I", "D"), "kv": ("error", "warn", "info", "debug"), "syslog": ("ERR", "WRN", "INF", "DBG"),
}
SERVICES = ["payments", "auth", "search", "billing", "inventory", "gateway", "notifier", "scheduler", "checkout",
            "profile", "catalog", "shipping"]
_MESSAGES = {
    "error": ["connection refused by upstream", "timeout after 30s contacting database", "failed to write record",
              "unhandled exception in worker thread", "could not parse response body", "lost connection to queue"],
    "warning": ["slow response: {n} ms", "retrying request (attempt 2)", "disk usage at {pct}%",
                "deprecated endpoint called", "queue depth above threshold", "certificate expires in {days} days"],
    "info": ["request completed in {n} ms", "user session started", "cache refreshed", "retry succeeded after an earlier error",
             "health check passed (0 errors)", "call to {other} took {n} ms", "config reloaded with no warnings",
             "job finished", "recovered from error state"],
    "debug": ["payload size {n} bytes", "cache hit for key user:{n}", "entering handler", "sent {n} rows to {other}",
              "error counter reset", "span closed"],
}
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _when(i: int) -> tuple[int, int, int, int, int]:
    """(month, day, hour, minute, second) of line i: about one line every 5 seconds from March 1st."""
    s = 5 * i + (i * 7919) % 5
    day = s // 86400
    return 3 + day // 28, 1 + day % 28, s // 3600 % 24, s // 60 % 60, s % 60


def _line(style: str, i: int, level: int, service: str, msg: str) -> str:
    mo, d, h, mi, se = _when(i)
    tok = TOKENS[style][level]
    if style == "iso":
        return f"2024-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{se:02d}Z {tok} {service}: {msg}"
    if style == "bracket":
        return f"[2024-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{se:02d}] [{tok}] {service} - {msg}"
    if style == "logcat":
        return f"{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{se:02d}.{(i * 37) % 1000:03d} {tok} {service}: {msg}"
    if style == "kv":
        return f'ts=2024-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{se:02d}Z level={tok} service={service} msg="{msg}"'
    return f"{_MONTHS[mo - 1]} {d:02d} {h:02d}:{mi:02d}:{se:02d} web-{i % 4 + 1} {service}[{4000 + i % 900}]: {tok} {msg}"


def _service_text(style: str, suffix: str, name: str) -> str:
    return (name.title() if style == "bracket" else name) + suffix


def _service_question(rng: random.Random, name: str) -> str:
    return rng.choice([f"the {name.title()} service", f"{name.upper()}", f"the {name} service", f"{name.title()}"])


def _shape(shape: str, lines: list[str], records: list[dict[str, Any]]) -> Context:
    return "\n".join(lines) if shape == "text" else lines if shape == "list" else records


def _app_log(rng: random.Random, shape: str, size: int) -> tuple[Context, list[tuple[int, str]], dict[str, Any]]:
    """An application log of about ``size`` characters; returns (context, [(level, service)], facts)."""
    style = rng.choice(list(TOKENS))
    suffix = rng.choice(["", "", "-svc", "-api"]) if style != "bracket" else rng.choice(["", "Service"])
    services = rng.sample(SERVICES, rng.randint(4, 8))
    weights = [rng.uniform(0.05, 0.12), rng.uniform(0.08, 0.15), rng.uniform(0.45, 0.6), rng.uniform(0.15, 0.3)]
    rows: list[tuple[int, str]] = []
    lines: list[str] = []
    records: list[dict[str, Any]] = []
    total = 2
    while total < size:
        level = rng.choices(range(4), weights)[0]
        svc = rng.choice(services)
        others = [s for s in services if s != svc]
        msg = rng.choice(_MESSAGES[LEVELS[level]]).format(n=rng.randint(2, 4000), pct=rng.randint(80, 99), days=rng.randint(2, 30),
                                                           other=rng.choice(others))
        name = _service_text(style, suffix, svc)
        i = len(rows)
        if shape == "records":
            mo, d, h, mi, se = _when(i)
            rec = {"time": f"2024-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{se:02d}", "level": TOKENS[style][level],
                   "service": name, "message": msg}
            records.append(rec)
            total += len(str(rec)) + 4
        else:
            lines.append(_line(style, i, level, name, msg))
            total += len(lines[-1]) + (1 if shape == "text" else 4)
        rows.append((level, svc))
    return _shape(shape, lines, records), rows, {"style": style, "suffix": suffix, "services": services}


def _level(rng: random.Random, shape: str, size: int, with_service: bool) -> Built:
    context, rows, facts = _app_log(rng, shape, size)
    level = rng.choice([0, 0, 1])
    word = LEVELS[level]
    if with_service:
        present = sorted({s for lv, s in rows if lv == level})
        svc = rng.choice(present)
        gold = sum(1 for lv, s in rows if lv == level and s == svc)
        who = _service_question(rng, svc)
        q = rng.choice([f"How many {word}s did {who} log?", f"How many {word.upper()} lines come from {who}?",
                        f"Count the {word}s logged by {who}.", f"How many log entries from {who} are {word}s?"])
        facts["service"] = svc
    else:
        gold = sum(1 for lv, _ in rows if lv == level)
        q = rng.choice([f"How many {word}s are in the log?", f"How many {word} entries were logged?",
                        f"Count the lines logged at {word.upper()} level.", f"How many log lines have the level {word}?"])
    return Built(context, ask(rng, q, "number"), gold, "count", {**facts, "level": word, "lines": len(rows)})


def level(rng: random.Random, shape: str, size: int) -> Built:
    """Count the errors (or warnings) in an application log."""
    return _level(rng, shape, size, False)


def level_service(rng: random.Random, shape: str, size: int) -> Built:
    """Count the errors (or warnings) of one service."""
    return _level(rng, shape, size, True)


_PATHS = ["/api/orders", "/api/users", "/api/cart", "/login", "/static/app.js", "/api/search", "/health"]
_STATUS = [(200, 60), (201, 6), (204, 4), (301, 3), (304, 5), (400, 4), (401, 3), (403, 2), (404, 6), (429, 2),
           (500, 3), (502, 2), (503, 3)]


def _access_line(style: str, i: int, ip: str, method: str, path: str, status: int, size: int) -> str:
    mo, d, h, mi, se = _when(i)
    if style == "combined":
        return (f'{ip} - - [{d:02d}/{_MONTHS[mo - 1]}/2024:{h:02d}:{mi:02d}:{se:02d} +0000] '
                f'"{method} {path} HTTP/1.1" {status} {size}')
    return f"time=2024-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{se:02d}Z client={ip} method={method} path={path} status={status} bytes={size}"


def status(rng: random.Random, shape: str, size: int) -> Built:
    """Count the requests with a status code (or any 5xx), alone or with a method or a path."""
    style = rng.choice(["combined", "kv"])
    codes, weights = zip(*_STATUS)
    rows: list[tuple[str, str, int]] = []
    lines: list[str] = []
    records: list[dict[str, Any]] = []
    total = 2
    while total < size:
        ip = f"10.{rng.randint(0, 9)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        method = rng.choices(["GET", "POST", "PUT", "DELETE"], [70, 20, 6, 4])[0]
        path = rng.choice(_PATHS)
        path += f"/{rng.randint(1, 99999)}" if path.startswith("/api/") and rng.random() < 0.5 else ""
        code, nbytes = rng.choices(codes, weights)[0], rng.randint(0, 60000)
        if shape == "records":
            mo, d, h, mi, se = _when(len(rows))
            rec = {"time": f"2024-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{se:02d}Z", "client": ip, "method": method,
                   "path": path, "status": code, "bytes": nbytes}
            records.append(rec)
            total += len(str(rec)) + 4
        else:
            lines.append(_access_line(style, len(rows), ip, method, path, code, nbytes))
            total += len(lines[-1]) + (1 if shape == "text" else 4)
        rows.append((method, path, code))
    five = [r for r in rows if r[2] >= 500]
    kind = rng.choice(["code", "5xx", "code_method", "5xx_path"] if five else ["code", "code_method"])
    meta: dict[str, Any] = {"style": style, "condition": kind, "lines": len(rows)}
    if kind in ("code", "code_method"):
        present = [c for c in (404, 500, 503, 401, 429, 200) if any(r[2] == c for r in rows)][:5]
        code = rng.choice(present)
        meta["status"] = code
        if kind == "code":
            gold = sum(1 for r in rows if r[2] == code)
            q = rng.choice([f"How many requests returned status {code}?", f"How many responses had HTTP status code {code}?",
                            f"Count the requests that got a {code} response."])
        else:
            method = rng.choice(sorted({r[0] for r in rows if r[2] == code}))
            gold = sum(1 for r in rows if r[2] == code and r[0] == method)
            meta["method"] = method
            q = rng.choice([f"How many {method} requests returned status {code}?",
                            f"How many {method.lower()} requests got a {code} response?"])
    else:
        if kind == "5xx":
            gold = len(five)
            q = rng.choice(["How many requests failed with a server error (any 5xx status)?",
                            "How many responses had a 5xx status code?", "Count the requests answered with a status of 500 or above."])
        else:
            prefix = rng.choice(sorted({p for _, p, _ in five if p.startswith("/api/")} or {five[0][1]}))
            prefix = "/".join(prefix.split("/")[:3])
            gold = sum(1 for r in five if r[1] == prefix or r[1].startswith(prefix + "/"))
            meta["path"] = prefix
            q = rng.choice([f"How many requests to {prefix} (including its sub-paths) failed with a 5xx status?",
                            f"How many server errors (5xx) were returned for paths under {prefix}?"])
    return Built(_shape(shape, lines, records), ask(rng, q, "number"), gold, "count", meta)


FAMILY = Family("logs", __doc__.split("\n")[0], {"level": level, "level_service": level_service, "status": status},
                ("text", "list", "records"), 4_000, 2_000_000)
