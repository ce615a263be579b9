"""recurse: fan the pending sub-calls out, one ``sub_call`` task per prompt, in a fixed order.

Each task is its own step: it runs in parallel with the others (bounded by the run's
``max_concurrency``), is checkpointed as soon as it finishes, and shows up on its own in Studio.
On resume only the unfinished ones run again. The fixed order keeps each task's id (and so a
child RLM's checkpoint namespace) stable across a crash.
"""

from __future__ import annotations

from typing import Any

from langgraph.types import Send

from rlm_graph.graph.state import RLMState


def recurse(state: RLMState) -> dict[str, Any]:
    """Nothing to change in the state: the fan-out happens on the outgoing edge."""
    return {}


def fan_out(state: RLMState) -> list[Send]:
    """One ``Send`` to ``sub_call`` per pending prompt, in the order the cell asked."""
    return [Send("sub_call", dict(p)) for p in state.get("pending") or []]
