"""The in-sandbox REPL worker. Standard library only: it runs unchanged in a local subprocess,
a Docker container or an E2B sandbox, started as ``python3 -u worker.py``.

It speaks JSON lines. Host -> worker::

    {"type": "load_context", "path": "...", "format": "text|json|jsonl|csv|auto"}
    {"type": "exec", "cell": 3, "code": "...", "timeout": 60, "max_output_chars": 4000}
    {"type": "answer", "id": 7, "texts": ["..."], "error": null}
    {"type": "shutdown"}

Worker -> host::

    {"type": "ready", "pid": 123, "python": "3.11.7"}
    {"type": "loaded", "meta": {...}}
    {"type": "request", "id": 7, "kind": "llm|rlm", "prompts": ["..."], "contexts": [...]}
    {"type": "result", "cell": 3, "stdout": "...", "stderr": "...", "error": "...",
     "final": null, "vars": {"name": "type"}, "timed_out": false}

The protocol channel is a private copy of the original stdout; file descriptor 1 is pointed at
stderr so that output from C extensions or child processes cannot corrupt it.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import re
import signal
import sys
import time
import traceback

_PROTO = None  # the protocol output stream, set in main()
_IN = None  # the protocol input stream
_REQ_ID = 0
_RESERVED = (
    "context",
    "llm_query",
    "llm_query_batched",
    "rlm_query",
    "rlm_query_batched",
    "FINAL",
    "FINAL_VAR",
    "SHOW_VARS",
    "search",
)


class CellTimeout(BaseException):
    """Raised inside a cell when its time is up. A BaseException so `except Exception` can't eat it."""


class _Capped(io.TextIOBase):
    """A text sink that keeps the head and the tail of what is written, in bounded memory."""

    def __init__(self, limit: int) -> None:
        self.limit = max(int(limit), 200)
        self.half = self.limit // 2
        self.head: list[str] = []
        self.head_len = 0
        self.tail = ""
        self.total = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            s = str(s)
        n = len(s)
        self.total += n
        if self.head_len < self.half:
            take = s[: self.half - self.head_len]
            self.head.append(take)
            self.head_len += len(take)
            s = s[len(take) :]
        if s:
            self.tail = (self.tail + s)[-self.half :]
        return n

    def getvalue(self) -> str:
        head = "".join(self.head)
        shown = len(head) + len(self.tail)
        if self.total <= shown:
            return head + self.tail
        omitted = self.total - shown
        return head + "\n... [%d characters omitted] ...\n" % omitted + self.tail


class _Channel:
    def __init__(self) -> None:
        self.final = None
        self.timer_left = 0.0


_CH = _Channel()
_NS: dict = {}
_CONTEXT_SOURCE: dict = {}


def _send(msg: dict) -> None:
    _PROTO.write(json.dumps(msg, ensure_ascii=False) + "\n")
    _PROTO.flush()


def _read() -> dict | None:
    line = _IN.readline()
    if not line:
        return None
    return json.loads(line)


def _pause_timer() -> None:
    # Time spent waiting for the host's sub-call answers does not count against the cell.
    left, _ = signal.getitimer(signal.ITIMER_REAL)
    _CH.timer_left = left
    signal.setitimer(signal.ITIMER_REAL, 0)


def _resume_timer() -> None:
    if _CH.timer_left > 0:
        signal.setitimer(signal.ITIMER_REAL, _CH.timer_left)


def _ask(kind: str, prompts: list, contexts: list | None = None) -> list:
    global _REQ_ID
    _REQ_ID += 1
    rid = _REQ_ID
    msg = {"type": "request", "id": rid, "kind": kind, "prompts": prompts}
    if contexts is not None:
        msg["contexts"] = contexts
    _pause_timer()
    try:
        _send(msg)
        while True:
            reply = _read()
            if reply is None:
                os._exit(0)  # host went away
            if reply.get("type") == "shutdown":
                os._exit(0)
            if reply.get("type") == "answer" and reply.get("id") == rid:
                break
    finally:
        _resume_timer()
    if reply.get("error"):
        raise RuntimeError(reply["error"])
    return list(reply.get("texts") or [])


def _as_prompt(p) -> str:
    return p if isinstance(p, str) else json.dumps(p, ensure_ascii=False, default=str) if isinstance(p, (list, dict)) else str(p)


def llm_query(prompt) -> str:
    """Ask a sub-LM one question and return its answer as a string."""
    return _ask("llm", [_as_prompt(prompt)])[0]


def llm_query_batched(prompts) -> list:
    """Ask a sub-LM many questions in parallel; answers come back in the same order."""
    prompts = [_as_prompt(p) for p in list(prompts)]
    if not prompts:
        return []
    return _ask("llm", prompts)


def _ctx_payload(ctx):
    if ctx is None:
        return None
    try:
        json.dumps(ctx)
        return ctx
    except (TypeError, ValueError):
        return str(ctx)


def rlm_query(prompt, context=None) -> str:
    """Ask a child RLM (one level deeper) a question over `context` (default: the prompt itself)."""
    return _ask("rlm", [_as_prompt(prompt)], [_ctx_payload(context)])[0]


def rlm_query_batched(prompts, contexts=None) -> list:
    """Run several child RLMs in parallel; `contexts` is an optional list of the same length."""
    prompts = [_as_prompt(p) for p in list(prompts)]
    if not prompts:
        return []
    if contexts is None:
        contexts = [None] * len(prompts)
    contexts = list(contexts)
    if len(contexts) != len(prompts):
        raise ValueError("rlm_query_batched: contexts must have the same length as prompts")
    return _ask("rlm", prompts, [_ctx_payload(c) for c in contexts])


def FINAL(answer) -> None:
    """Finish the run with this answer."""
    if isinstance(answer, float) and answer.is_integer() and abs(answer) < 1e16:
        answer = int(answer)  # 42.0 -> 42
    _CH.final = answer if isinstance(answer, str) else str(answer) if isinstance(answer, (int, float)) else repr(answer)
    print("FINAL answer recorded: %s" % _short(_CH.final))


def FINAL_VAR(name) -> None:
    """Finish the run with the value of the variable called `name`."""
    if isinstance(name, str) and name.strip().isidentifier():
        key = name.strip()
        if key in _NS and key not in _RESERVED:
            value = _NS[key]
            _CH.final = value if isinstance(value, str) else str(value)
            print("FINAL answer recorded from variable %s: %s" % (key, _short(_CH.final)))
            return
        if key in _NS:
            raise NameError("FINAL_VAR(%r): that is a REPL function, not a variable" % key)
        raise NameError(
            "FINAL_VAR(%r): no such variable. Defined variables: %s. To answer with the text itself, write FINAL(%r)."
            % (key, ", ".join(_user_vars()) or "none", key)
        )
    # Small models often pass the value itself: accept it.
    FINAL(name)


def SHOW_VARS() -> dict:
    """Return the variables defined so far, with their types."""
    return _user_vars()


def search(pattern, window=150, text=None, regex=False, case=False) -> list:
    """Find `pattern` in `context` (or in `text`) and return the text around every match.

    A match in a short line gives the whole line (once per line); a match in a long line (or in a
    text with no line breaks) gives `window` characters either side of it. The search ignores case
    unless `case=True`; `regex=True` reads `pattern` as a regular expression. On a list the items
    are searched one by one, on a dict its "key: value" pairs.

    A phrase that matches nothing is tried again, with a printed note saying so: first as its words
    in the same order with other endings and punctuation between them ("magic number for" finds
    "magic numbers, for"), then as its rarest word if that word is rare (at most 20 matches).
    Otherwise the note gives how often each word occurs.
    """
    if not isinstance(pattern, str) or not pattern.strip():
        raise TypeError("search(pattern): pattern must be a non-empty string, got %r" % (pattern,))
    source = _NS.get("context") if text is None else text
    window = max(0, int(window))
    flags = 0 if case else re.IGNORECASE
    if isinstance(source, dict):
        source = ["%s: %s" % (k, v) for k, v in source.items()]
    elif not isinstance(source, (str, list, tuple)):
        source = str(source)
    hits = _find(re.compile(pattern if regex else re.escape(pattern), flags), source, window)
    words = [] if regex else list(dict.fromkeys(_WORD.findall(pattern)))
    if hits or len(words) < 2:
        return hits
    loose = r"\W+".join(re.escape(w) + r"\w{0,3}" for w in words)
    hits = _find(re.compile(loose, flags), source, window)
    if hits:
        print("search(%r): no exact match; %d with its words in this order, other endings or punctuation between:"
              % (pattern, len(hits)))
        return hits
    counts = [(w, _count(w, source, flags)) for w in words[:8] if len(w) > 2]
    found = [(n, w) for w, n in counts if n]
    if found and min(found)[0] <= 20:
        n, word = min(found)
        print("search(%r) found nothing; here are the matches (%d) of its rarest word %r:" % (pattern, n, word))
        return _find(re.compile(re.escape(word), flags), source, window)
    if counts:
        print("search(%r) found nothing. Each word alone is found: %s. Search a shorter text."
              % (pattern, ", ".join("%r %s" % (w, "1000+" if n >= 1000 else n) for w, n in counts)))
    return hits


#: A word of a search phrase: letters and digits, with inner hyphens or apostrophes.
_WORD = re.compile(r"[^\W_](?:[\w'-]*[^\W_])?")


def _find(compiled, source, window: int) -> list:
    """The snippets around every match of ``compiled`` in a str, or in each item of a list."""
    if isinstance(source, (list, tuple)):
        hits = []
        for item in source:
            hits.extend(_find(compiled, item if isinstance(item, str) else str(item), window))
        return hits
    hits, last_line = [], -1
    for m in compiled.finditer(source):
        start = source.rfind("\n", 0, m.start()) + 1
        end = source.find("\n", m.end())
        end = len(source) if end < 0 else end
        if end - start <= 2 * window + (m.end() - m.start()):
            if start != last_line:
                hits.append(source[start:end])
                last_line = start
        else:
            hits.append(source[max(start, m.start() - window):min(end, m.end() + window)])
    return hits


def _count(word: str, source, flags: int, cap: int = 1000) -> int:
    """How often ``word`` occurs in a str or a list's items, counting up to ``cap``."""
    n = 0
    for part in source if isinstance(source, (list, tuple)) else (source,):
        for _ in re.finditer(re.escape(word), part if isinstance(part, str) else str(part), flags):
            n += 1
            if n >= cap:
                return n
    return n


def _short(s: str, n: int = 200) -> str:
    s = str(s)
    return s if len(s) <= n else s[:n] + "..."


def _user_vars() -> dict:
    out = {}
    for k, v in _NS.items():
        if k.startswith("_") or k in _RESERVED or k == "__builtins__":
            continue
        if type(v).__name__ in ("module", "function", "builtin_function_or_method", "type") and k in (
            getattr(v, "__name__", None),
        ):
            continue
        out[k] = type(v).__name__
        if len(out) >= 200:
            break
    return out


_FUNCS = {
    "llm_query": llm_query,
    "llm_query_batched": llm_query_batched,
    "rlm_query": rlm_query,
    "rlm_query_batched": rlm_query_batched,
    "FINAL": FINAL,
    "FINAL_VAR": FINAL_VAR,
    "SHOW_VARS": SHOW_VARS,
    "search": search,
}


def _restore() -> list:
    """Put back REPL functions the code overwrote or deleted; return the names restored."""
    restored = []
    for name, fn in _FUNCS.items():
        if _NS.get(name) is not fn:
            if name in _NS or _NS.get("__rlm_installed__"):
                restored.append(name)
            _NS[name] = fn
    if _CONTEXT_SOURCE and ("context" not in _NS or _NS["context"] is not _CONTEXT_SOURCE.get("value")):
        # Small models paste the preview into `context = """..."""` and then search that: the
        # name always means the whole data. (A cell may still bind other names to it.)
        _NS["context"] = _CONTEXT_SOURCE["value"]
        restored.append("context")
    _NS["__rlm_installed__"] = True
    return restored


def _number(s: str):
    try:
        return int(s)
    except ValueError:
        try:
            return float(s)
        except ValueError:
            return s


#: How much of a text context is read at a time (the loader's extra memory, about).
_LOAD_CHUNK = 8 << 20
#: For each width of str (0: ASCII, 1: Latin-1, 2: UCS-2, 4: UCS-4): its largest character and
#: the codec that gives its characters' bytes as CPython stores them.
_MAXCHAR = {0: 0x7F, 1: 0xFF, 2: 0xFFFF, 4: 0x10FFFF}
_LAYOUT_CODEC = {0: "ascii", 1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}
_STR_LAYOUT: list = []  # [(PyUnicode_New, data offset of an ASCII str, of any other)], or [None]


def _read_text(path: str, chunk: int = _LOAD_CHUNK) -> str:
    """The file as ``open(path, encoding="utf-8", errors="replace").read()`` returns it, in about
    half the peak memory.

    That read holds the file's bytes and the str decoded from them at once: twice the file. Here
    the str is allocated once at its final size (CPython, through ctypes) and filled from reads of
    ``chunk`` bytes, so the peak is the str and a chunk or two. An ASCII file without carriage
    returns is copied in as it is read; any other (non-ASCII, invalid UTF-8, CR or CRLF line ends)
    is decoded twice with the decoders ``open`` uses: once to learn the str's length and width,
    once to fill it. Anything unexpected (another Python, no ctypes, a str layout that fails its
    check, a file that changes while it is read) falls back to the plain read.
    """
    try:
        text = _read_text_in_place(path, max(int(chunk), 1))
    except Exception:
        text = None
    if text is None:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    return text


def _read_text_in_place(path: str, chunk: int):
    layout = _str_layout()
    if layout is None:
        return None
    with open(path, "rb") as f:
        text = _fill_ascii(f, layout, os.fstat(f.fileno()).st_size, chunk)
        if text is None:
            f.seek(0)
            text = _fill_decoded(f, layout, chunk)
    return text


def _fill_ascii(f, layout, size: int, chunk: int):
    """A str of the file's ``size`` bytes if they are ASCII without a CR, else None."""
    if size <= 0:
        return "" if not f.read(1) else None
    text = layout[0](size, _MAXCHAR[0])
    view = _str_data(text, layout[1], size)
    buf = bytearray(min(chunk, size))
    mem = memoryview(buf)
    pos = 0
    try:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            # The whole buffer is checked rather than a copy of its first n bytes: past n it holds
            # bytes that passed this same check before (or the zeros it started with).
            if pos + n > size or not buf.isascii() or b"\r" in buf:
                return None
            view[pos : pos + n] = mem[:n]
            pos += n
    finally:
        mem.release()
        view.release()
    return text if pos == size else None


def _fill_decoded(f, layout, chunk: int):
    """The file decoded and its line ends translated as ``open`` does, written into a str allocated
    at its final length and width (learnt by a first pass); None if the two passes disagree."""
    total = width = 0
    for piece in _decoded(f, chunk):
        total += len(piece)
        if width < 4:
            width = max(width, _str_width(piece))
    if not total:
        return ""
    size = max(width, 1)
    end = total * size
    text = layout[0](total, _MAXCHAR[width])
    view = _str_data(text, layout[1] if width == 0 else layout[2], end)
    codec = _LAYOUT_CODEC[width]
    f.seek(0)
    pos = seen = 0
    try:
        for piece in _decoded(f, chunk):
            if seen < width:
                seen = max(seen, _str_width(piece))
            data = piece.encode(codec)  # fails, or has the wrong length, on a wider character
            if len(data) != len(piece) * size or pos + len(data) > end:
                return None
            view[pos : pos + len(data)] = data
            pos += len(data)
    finally:
        view.release()
    # The str must be exactly as wide as its widest character, or it would not equal the same text.
    return text if pos == end and seen == width else None


def _decoded(f, chunk: int):
    """The text of binary file ``f`` in pieces, decoded and newline-translated as ``open`` does."""
    import codecs

    decoder = io.IncrementalNewlineDecoder(codecs.getincrementaldecoder("utf-8")("replace"), translate=True)
    while True:
        data = f.read(chunk)
        piece = decoder.decode(data, final=not data)
        if piece:
            yield piece
        if not data:
            return


def _str_width(s: str) -> int:
    """Bytes per character CPython needs for ``s``: 0 (ASCII), 1, 2 or 4."""
    if s.isascii():
        return 0
    try:
        s.encode("latin-1")
        return 1
    except UnicodeEncodeError:
        pass
    return 2 if len(s.encode("utf-16-le")) == 2 * len(s) else 4


def _str_data(text: str, offset: int, nbytes: int) -> memoryview:
    """A writable view of the character data of ``text``, a str nothing else has seen yet."""
    import ctypes

    return memoryview((ctypes.c_char * nbytes).from_address(id(text) + offset)).cast("B")


def _str_layout():
    """How to build a str in place here, checked once: (PyUnicode_New, data offset of an ASCII str,
    data offset of any other str), or None when this Python does not allow it safely."""
    if not _STR_LAYOUT:
        try:
            _STR_LAYOUT.append(_probe_str_layout())
        except Exception:
            _STR_LAYOUT.append(None)
    return _STR_LAYOUT[0]


def _probe_str_layout():
    if sys.implementation.name != "cpython":
        return None
    import ctypes

    new = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_ssize_t, ctypes.c_uint32)(("PyUnicode_New", ctypes.pythonapi))
    # A compact str's characters follow its header; sys.getsizeof counts header + characters + NUL.
    ascii_at = sys.getsizeof("".join(("pro", "be"))) - 6
    other_at = sys.getsizeof("".join(("\xe9", "t\xe9"))) - 4
    layout = (new, ascii_at, other_at)
    for first in ("a", "\xe9", "\u20ac", "\U0001f600"):
        sample = "".join((first, "-probe-", first))  # built now: no cached UTF-8 copy, not interned
        width = _str_width(sample)
        data = sample.encode(_LAYOUT_CODEC[width])
        at = ascii_at if width == 0 else other_at
        if ctypes.string_at(id(sample) + at, len(data)) != data:
            return None
        built = new(len(sample), _MAXCHAR[width])
        view = _str_data(built, at, len(data))
        view[:] = data
        view.release()
        if built != sample or hash(built) != hash(sample) or sys.getsizeof(built) != sys.getsizeof(sample):
            return None
    return layout


def _load(path: str, fmt: str):
    if fmt == "auto":
        low = path.lower()
        fmt = "json" if low.endswith(".json") else "jsonl" if low.endswith(".jsonl") else "csv" if low.endswith(".csv") else "text"
    if fmt == "text":
        return _read_text(path)
    if fmt == "json":
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    if fmt == "jsonl":
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    if fmt == "csv":
        with open(path, encoding="utf-8", newline="") as f:
            return [{k: _number(v) if isinstance(v, str) else v for k, v in row.items()} for row in csv.DictReader(f)]
    raise ValueError("unknown context format %r" % fmt)


def _preview(value, n: int = 300) -> str:
    if isinstance(value, str):
        return value[:n]
    if isinstance(value, list):
        parts = []
        for item in value[:3]:
            parts.append(_short(repr(item), 150))
        return "[" + ", ".join(parts) + (", ..." if len(value) > 3 else "") + "]"
    if isinstance(value, dict):
        keys = list(value)[:20]
        return "keys: " + ", ".join(repr(k) for k in keys) + (", ..." if len(value) > 20 else "")
    return _short(repr(value), n)


def _meta(value) -> dict:
    meta = {"type": type(value).__name__}
    if isinstance(value, str):
        meta["length"] = len(value)
        meta["lines"] = value.count("\n") + (1 if value and not value.endswith("\n") else 0)
    elif isinstance(value, (list, dict)):
        meta["length"] = len(value)
        sizes = [len(x) if isinstance(x, (str, list, dict)) else len(repr(x)) for x in (value if isinstance(value, list) else value.values())]
        meta["total_chars"] = sum(len(x) if isinstance(x, str) else len(json.dumps(x, default=str)) for x in (value if isinstance(value, list) else value.values())) if len(value) <= 100000 else None
        meta["chunk_lengths"] = sizes[:20]
        if isinstance(value, dict):
            meta["keys"] = [str(k) for k in list(value)[:20]]
    meta["preview"] = _preview(value)
    return meta


def _on_alarm(signum, frame):
    raise CellTimeout()


def _exec_cell(cell: int, code: str, timeout: float, limit: int) -> dict:
    out = _Capped(limit)
    err = _Capped(max(limit // 2, 200))
    error = None
    timed_out = False
    _CH.final = None
    filename = "<cell %d>" % cell
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        tree = ast.parse(code, filename, "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        if timeout and timeout > 0:
            signal.setitimer(signal.ITIMER_REAL, float(timeout))
        try:
            exec(compile(tree, filename, "exec"), _NS)
            if last is not None:
                value = eval(compile(last, filename, "eval"), _NS)
                if value is not None:
                    out.write(repr(value) + "\n")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except CellTimeout:
        timed_out = True
        error = "TimeoutError: the cell ran longer than %s s and was stopped. Variables assigned before that are kept." % timeout
    except SyntaxError as exc:
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    except BaseException as exc:  # the cell's own errors, SystemExit and KeyboardInterrupt included
        tb = traceback.extract_tb(exc.__traceback__)
        frames = [f for f in tb if f.filename == filename]
        lines = traceback.format_list(frames[-5:]) if frames else []
        error = ("".join(lines) + "".join(traceback.format_exception_only(type(exc), exc))).strip()
    finally:
        sys.stdout, sys.stderr = old_out, old_err
    restored = _restore()
    stderr = err.getvalue()
    if restored:
        stderr += "note: %s %s restored: the REPL's own names cannot be replaced.%s\n" % (
            ", ".join(restored),
            "was" if len(restored) == 1 else "were",
            " `context` always holds the whole data: use it directly, or give your copy another name." if "context" in restored else "",
        )
    final = _CH.final
    _CH.final = None
    return {
        "type": "result",
        "cell": cell,
        "stdout": out.getvalue(),
        "stderr": stderr,
        "error": error,
        "final": final,
        "vars": _user_vars(),
        "timed_out": timed_out,
    }


def _watch_host(parent: int) -> None:
    """Exit when the host goes away, even in the middle of a long cell.

    The host's end of stdin hanging up covers pipes and sockets (and Docker, where the worker is
    PID 1 and has no parent to watch); the parent check covers the rest.
    """
    import select

    poller = select.poll()
    poller.register(0, select.POLLHUP | getattr(select, "POLLRDHUP", 0))
    gone = select.POLLHUP | getattr(select, "POLLRDHUP", 0)
    while True:
        time.sleep(1.0)
        if parent > 1 and os.getppid() != parent:
            os._exit(0)
        if any(ev & gone for _, ev in poller.poll(0)):
            os._exit(0)


def main() -> None:
    global _PROTO, _IN
    if os.environ.get("RLM_WATCH_PARENT", "1") == "1":
        import threading

        threading.Thread(target=_watch_host, args=(os.getppid(),), daemon=True).start()
    proto_fd = os.dup(1)
    os.dup2(2, 1)  # stray writes to fd 1 (C code, os.system) land on stderr, not on the channel
    _PROTO = os.fdopen(proto_fd, "w", encoding="utf-8", buffering=1)
    _IN = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8")
    sys.stdout = io.TextIOWrapper(os.fdopen(os.dup(2), "wb"), encoding="utf-8", line_buffering=True)
    signal.signal(signal.SIGALRM, _on_alarm)
    sys.setrecursionlimit(10000)
    _NS["__name__"] = "__main__"
    _restore()
    _send({"type": "ready", "pid": os.getpid(), "python": sys.version.split()[0]})
    while True:
        try:
            msg = _read()
        except ValueError as exc:
            _send({"type": "protocol_error", "error": str(exc)})
            continue
        if msg is None or msg.get("type") == "shutdown":
            break
        kind = msg.get("type")
        if kind == "load_context":
            try:
                start = time.time()
                value = _load(msg["path"], msg.get("format", "auto"))
                _NS["context"] = value
                _CONTEXT_SOURCE.update(path=msg["path"], format=msg.get("format", "auto"), value=value)
                meta = _meta(value)
                meta["load_seconds"] = round(time.time() - start, 3)
                _send({"type": "loaded", "meta": meta})
            except Exception as exc:
                _send({"type": "loaded", "error": "%s: %s" % (type(exc).__name__, exc)})
        elif kind == "exec":
            result = _exec_cell(
                int(msg.get("cell", 0)),
                msg.get("code", ""),
                float(msg.get("timeout") or 0),
                int(msg.get("max_output_chars") or 4000),
            )
            _send(result)
        elif kind == "ping":
            _send({"type": "pong"})
        else:
            _send({"type": "protocol_error", "error": "unknown message type %r" % kind})


if __name__ == "__main__":
    main()
