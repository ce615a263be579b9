"""recurse: fan the pending sub-calls out, one ``sub_call`` task per prompt, in a fixed order.

Each task is its own step: it runs in parallel with the others (at most the run's
``max_concurrency`` model calls at once, see :func:`rlm_graph.graph.runtime.concurrency_slot`),
is checkpointed as soon as it finishes, and shows up on its own in Studio.
On resume only the unfinished ones run again. The fixed order keeps each task's id (and so a
child RLM's checkpoint namespace) stable across a crash.
"""

from __future__ import annotations

from typing import Any

from langgraph.types import Send

from rlm_graph.graph.state import RLMState

#: Most sub_call tasks sent in one step. The rest go in the next step, after execute has taken
#: the answers in; each finished task is saved on its own either way.
FANOUT_WAVE = 256

#: Threads LangGraph may use in one step: a whole wave, plus room for the checkpoint writes that
#: each finished task submits (they must not queue behind tasks still waiting for their turn).
EXECUTOR_THREADS = FANOUT_WAVE + 16


def recurse(state: RLMState) -> dict[str, Any]:
    """Nothing to change in the state: the fan-out happens on the outgoing edge."""
    return {}


def fan_out(state: RLMState) -> list[Send]:
    """One ``Send`` to ``sub_call`` per pending prompt, in the order the cell asked."""
    return [Send("sub_call", dict(p)) for p in (state.get("pending") or [])[:FANOUT_WAVE]]
