"""Token estimates for budget reservations: an upper bound on a prompt's tokens, before it is sent.

The ledger reserves a call's worst case before sending it, so an estimate must not fall short:
falling short lets the run overshoot its ``max_tokens`` by the difference. Two ways, by model:

- OpenAI models (``gpt-*``, ``o1``/``o3``/``o4``..., ``chatgpt-*``): tiktoken, when the model's
  encoding file is already in tiktoken's cache. tiktoken downloads that file on first use with no
  timeout; a budget check must not hang on the network, so rlm-graph never triggers the download.
  Warm the cache once with ``python -c "import tiktoken; tiktoken.get_encoding('o200k_base')"``.
- Everything else (and OpenAI models with a cold cache): a conservative ratio, one token per
  :data:`ASCII_CHARS_PER_TOKEN` ASCII characters plus one per other character. English prose
  runs near 4 characters a token and code near 3.3 with common tokenizers; CJK text near one
  token a character.

Every message adds :data:`MESSAGE_OVERHEAD` tokens for the chat template's role markers.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import tempfile
from collections.abc import Iterable
from typing import Any

#: ASCII characters counted as one token by the ratio (below the ~3.3-4 real tokenizers reach).
ASCII_CHARS_PER_TOKEN = 3.0

#: Tokens a chat template adds per message (role markers, separators).
MESSAGE_OVERHEAD = 4

_OPENAI_NAME = re.compile(r"^(?:openai:)?(gpt-|o[1-9]|chatgpt-|text-embedding-)", re.IGNORECASE)

#: tiktoken's encoding files, by encoding name (what ``tiktoken_ext.openai_public`` downloads).
_ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"


def ratio_tokens(text: str) -> int:
    """Tokens of ``text`` by the conservative ratio: ASCII characters / 3, plus one per other character."""
    ascii_chars = len(text) if text.isascii() else len(text.encode("ascii", "ignore"))
    other = len(text) - ascii_chars
    return math.ceil(ascii_chars / ASCII_CHARS_PER_TOKEN) + other


def _cache_dir() -> str:
    """Where tiktoken keeps its encoding files (its own rule: two variables, else the temp dir)."""
    return os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "data-gym-cache")


@functools.lru_cache(maxsize=32)
def _encoder(model: str) -> Any | None:
    """tiktoken's encoder for an OpenAI model when its file is cached (never downloads); else None."""
    if not _OPENAI_NAME.match(model):
        return None
    try:
        import tiktoken
    except ImportError:
        return None
    name = model.split(":", 1)[-1]
    try:
        encoding = tiktoken.encoding_name_for_model(name)
    except KeyError:
        encoding = "o200k_base"
    cached = os.path.join(_cache_dir(), hashlib.sha1(_ENCODING_URL.format(name=encoding).encode()).hexdigest())
    if not os.path.exists(cached):
        return None
    try:
        return tiktoken.get_encoding(encoding)
    except Exception:  # a corrupt cache file: the ratio is still an answer
        return None


def method_for(model: str) -> str:
    """How tokens of ``model``'s prompts are estimated: ``"tiktoken:<encoding>"`` or ``"ratio"``."""
    enc = _encoder(model)
    return f"tiktoken:{enc.name}" if enc is not None else "ratio"


def count_tokens(texts: Iterable[str], model: str = "") -> int:
    """An upper estimate of the prompt tokens of a chat request made of ``texts`` (one per message)."""
    enc = _encoder(model) if model else None
    total = 0
    for text in texts:
        total += MESSAGE_OVERHEAD + (len(enc.encode(text, disallowed_special=())) if enc is not None else ratio_tokens(text))
    return total
