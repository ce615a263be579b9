"""The worker's text loader: the same str as ``open(..., errors="replace").read()``, in less memory.

``worker._read_text`` builds the str in place from chunked reads (an ASCII fast path, and two
decoding passes for anything else). Each case here is compared with the plain read, the way the
worker did it before, on real files and with chunk sizes small enough to cut the file in many
places: inside a multi-byte character, between the CR and the LF of a CRLF, inside an invalid
sequence.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlm_graph.sandboxes import worker

# Chunk sizes that cut every case in many places, and one larger than every file.
CHUNKS = (1, 2, 3, 7, 64, 1 << 20)

CASES = {
    "ascii": b"alpha 1\nbeta 2\ngamma 3\n" * 50,
    "ascii_no_final_newline": b"x" * 1000 + b"\nlast line",
    "latin1": "caf\u00e9 na\u00efve \u00fcber\n".encode() * 40,
    "bmp": "price: 12\u20ac \u2014 \u201cquoted\u201d \u4e2d\u6587\n".encode() * 40,
    "astral": "emoji \U0001f600 and \U0001f680 after ascii\n".encode() * 40,
    "mixed_widths": b"plain ascii first\n" * 30 + "\u00e9\n".encode() + "\u20ac\n".encode() + "\U0001f600\n".encode(),
    "bom": "\ufeffstarts with a byte order mark\n".encode() * 10,
    "invalid_utf8": b"ok \xff\xfe bad \xc3( \xe2\x82 cut \xf0\x9f\x98 \xed\xa0\x80 surrogate \x80 lone\n" * 20,
    "invalid_at_end": b"text then a cut character \xe2\x82",
    "crlf": b"line one\r\nline two\r\n" * 50,
    "crlf_non_ascii": "l\u00ednea\r\nzw\u00f6lf\r\n".encode() * 50,
    "lone_cr": b"old mac\rline ends\rhere\r" * 30,
    "cr_at_end": b"ends with a carriage return\r",
    "mixed_newlines": b"a\r\nb\nc\rd\r\r\ne\n\r" * 30,
    "nul_and_controls": b"a\x00b\x01c\x1fd\x7f\n" * 30,
    "empty": b"",
    "one_byte": b"x",
    "one_non_ascii_char": "\u00e9".encode(),
}


def plain(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def assert_same(got: str, want: str) -> None:
    assert type(got) is str
    assert len(got) == len(want)
    assert got == want  # CPython compares the storage width first: equal means built canonically
    assert hash(got) == hash(want)
    assert {want: 1}[got] == 1
    assert got.isascii() == want.isascii()
    assert got.encode("utf-8", "surrogatepass") == want.encode("utf-8", "surrogatepass")
    if len(want) > 1:  # (one-character results of the plain read may be shared singletons)
        assert sys.getsizeof(got) == sys.getsizeof(want)


@pytest.fixture(scope="module")
def in_place() -> None:
    if worker._str_layout() is None:
        pytest.skip(f"no in-place str building on {sys.implementation.name} {sys.version.split()[0]}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_text_as_the_plain_read(name: str, tmp_path: Path, in_place: None) -> None:
    path = tmp_path / f"{name}.txt"
    path.write_bytes(CASES[name])
    want = plain(path)
    for chunk in CHUNKS:
        got = worker._read_text_in_place(str(path), chunk)
        assert got is not None, f"chunk={chunk}: fell back to the plain read"
        assert_same(got, want)
        assert_same(worker._read_text(str(path), chunk), want)
    assert_same(worker._load(str(path), "text"), want)
    assert_same(worker._load(str(path), "auto"), want)


def test_size_not_a_multiple_of_the_chunk(tmp_path: Path, in_place: None) -> None:
    path = tmp_path / "odd.txt"
    data = bytes(range(32, 127)) * 11 + b"\n"  # 1046 bytes
    path.write_bytes(data)
    want = plain(path)
    for chunk in (10, 100, 1000, 1045, 1046, 1047, 4096):
        assert len(data) % chunk or chunk == len(data) or chunk > len(data)
        assert_same(worker._read_text_in_place(str(path), chunk), want)
    for chunk in (5, 333):  # the same through the decoding passes (a non-ASCII character last)
        path.write_bytes(data + "\u00e9".encode())
        assert_same(worker._read_text_in_place(str(path), chunk), plain(path))


def test_non_ascii_late_in_an_ascii_file(tmp_path: Path, in_place: None) -> None:
    # The ASCII fast path fills most of the str, then meets a wider character and starts over.
    path = tmp_path / "late.txt"
    path.write_bytes(b"abc\n" * 500 + "\u20ac\r\n".encode() + b"tail\n")
    want = plain(path)
    for chunk in (16, 1999, 2000, 2001, 4096):
        assert_same(worker._read_text_in_place(str(path), chunk), want)


def test_missing_file_raises_as_before(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        worker._load(str(tmp_path / "nope.txt"), "text")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read the peak memory")
def test_peak_memory_is_about_one_copy(tmp_path: Path) -> None:
    """Loading a 48 MB file grows the worker's peak RSS by well under twice its size."""
    size = 48 << 20
    path = tmp_path / "big.txt"
    line = b"the quick brown fox jumps over the lazy dog 0123456789 abcdefgh\n"
    with open(path, "wb") as f:
        f.write(line * (size // len(line)))
    code = (
        "import sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import worker\n"
        "def hwm():\n"
        "    for l in open('/proc/self/status'):\n"
        "        if l.startswith('VmHWM:'):\n"
        "            return int(l.split()[1]) * 1024\n"
        "worker._str_layout()\n"
        "before = hwm()\n"
        "text = worker._load(sys.argv[2], 'text')\n"
        "print(hwm() - before, len(text), worker._str_layout() is not None)\n"
    )
    sandboxes = os.path.dirname(worker.__file__)
    argv = [sys.executable, "-c", code, sandboxes, str(path)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    grown, length, in_place = out.stdout.split()
    assert int(length) == path.stat().st_size
    if in_place != "True":
        pytest.skip("no in-place str building here: the loader falls back to the plain read")
    assert int(grown) < 1.5 * size, f"peak RSS grew by {int(grown) / size:.2f}x the file size"
