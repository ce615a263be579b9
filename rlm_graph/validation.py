"""Checking values that come from outside: numbers a user gives, text bound for a checkpoint.

One place for both, used by the CLI, the Python API and the HTTP context alike:

- :func:`check_number` accepts a finite number in its range, or raises one
  :class:`~rlm_graph.errors.ConfigurationError` line naming the setting (``nan``, ``inf``,
  negatives and absurd sizes never reach a run, where they would hang it or end it later).
- :func:`safe_text` makes a string storable by every checkpointer: Postgres refuses NUL in text
  and JSON, and no UTF-8 encoder takes a lone surrogate; both become U+FFFD.
  :func:`safe_value` does the same through lists, tuples and dicts.
"""

from __future__ import annotations

import math
import re
from typing import Any

from rlm_graph.errors import ConfigurationError

#: Every number a user may set, by name: (minimum, maximum, whole number, minimum excluded).
#: The limits (:class:`~rlm_graph.graph.settings.Limits`), the model client's options, prices.
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "max_iterations": (1, 100_000, True, False),
    "max_depth": (0, 20, True, False),
    "max_subcalls": (1, 10**9, True, False),
    "max_tokens": (1, 10**12, True, False),
    "max_cost_usd": (0, 10**6, False, True),
    "max_seconds": (0, 10**7, False, True),
    "cell_timeout": (0, 7 * 86_400, False, True),
    "max_output_chars": (200, 10_000_000, True, False),
    "max_concurrency": (1, 1024, True, False),
    "max_errors": (1, 10**6, True, False),
    "reply_tokens": (1, 10**6, True, False),
    "timeout": (0, 86_400, False, True),
    "max_retries": (0, 100, True, False),
    "price": (0, 10**6, False, False),
}

#: What replaces a NUL or a lone surrogate in text bound for a checkpoint.
REPLACEMENT = "\ufffd"

_UNSAFE = re.compile("[\x00\ud800-\udfff]")


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float,
    maximum: float,
    integer: bool = False,
    allow_none: bool = False,
    exclusive_minimum: bool = False,
) -> Any:
    """``value`` if it is a finite number in ``[minimum, maximum]`` (an int when ``integer``).

    An integral float (``5.0``, as JSON may give) is accepted for an integer setting and returned
    as an int. ``exclusive_minimum`` makes the lower bound strict (``> 0`` for a timeout).

    Raises:
        ConfigurationError: one line naming ``name``, the value and the accepted range.

    Example:
        >>> check_number("cell_timeout", 30, minimum=0, maximum=86400, exclusive_minimum=True)
        30
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number, got {value!r}")
    given = value
    if integer and isinstance(value, float):
        if not value.is_integer():
            raise ConfigurationError(f"{name} must be a whole number, got {value!r}")
        value = int(value)
    low_ok = value > minimum if exclusive_minimum else value >= minimum
    if not low_ok or value > maximum:
        if (exclusive_minimum and minimum == 0) or (integer and minimum == 1 and not exclusive_minimum):
            low = "positive"
        else:
            low = f"more than {_show(minimum)}" if exclusive_minimum else f"at least {_show(minimum)}"
        raise ConfigurationError(f"{name} must be {low} and at most {_show(maximum)}, got {given!r}")
    return value


def check_setting(name: str, value: Any, *, allow_none: bool = False, label: str | None = None) -> Any:
    """``value`` checked against the range :data:`RANGES` gives ``name`` (see :func:`check_number`).

    ``label`` names the value in the message when it is not ``name`` (a price's model, say).

    Raises:
        ConfigurationError: not a finite number in range, in one line.
    """
    low, high, whole, strict = RANGES[name]
    return check_number(label or name, value, minimum=low, maximum=high, integer=whole, allow_none=allow_none,
                        exclusive_minimum=strict)


def _show(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def safe_text(text: str) -> str:
    """``text`` with each NUL and lone surrogate replaced by U+FFFD (the same object when clean)."""
    if text.isascii():
        return text.replace("\x00", REPLACEMENT) if "\x00" in text else text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _UNSAFE.sub(REPLACEMENT, text)
    return text.replace("\x00", REPLACEMENT) if "\x00" in text else text


def safe_value(value: Any) -> Any:
    """``value`` with :func:`safe_text` applied to every string in it, dict keys included.

    Containers are rebuilt only where something changed, so a clean value is returned as is.
    """
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict):
        items = [(safe_value(k), safe_value(v)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items())):
            return value
        return type(value)(items) if type(value) is dict else dict(items)
    if isinstance(value, (list, tuple)):
        items = [safe_value(v) for v in value]
        if all(a is b for a, b in zip(items, value)):
            return value
        return tuple(items) if isinstance(value, tuple) else items
    return value
