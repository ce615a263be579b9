"""The budget ledger: every model call reserves its worst case before it is sent.

A call's worst case is its prompt's token estimate (:mod:`rlm_graph.models.tokens`) plus the reply
cap sent with the request, priced from the run's price table; a sub-call also counts one against
``max_subcalls``. :meth:`Ledger.reserve` holds that amount only if it fits what is left of every
whole-tree budget, so parallel sub-calls reserving one by one send only what fits, and the spend
can pass a limit only by what the estimates fell short. When the reply arrives the hold is settled
to the usage the server reported; a call that fails is settled to nothing.

One :class:`Ledger` serves a whole tree of runs (a root run and its ``rlm_query`` children, which
run in the same process, in parallel): each run has a book in it, and every reservation is checked
against the sum of all books. The ledger is process-local, like the sandbox pool; what makes it
durable is the checkpointed state of each run:

- a run's settled spend is its state's ``usage`` and ``n_subcalls``;
- the holds of a fan-out are written to the state's ``reserved`` channel by the ``execute`` step
  that made them, and each ``sub_call`` task removes its own when it settles;
- every node that sees a run's state re-reads its book from it (:meth:`Ledger.sync`).

So a process that resumes a run rebuilds its ledger from the checkpoints: a root turn or a child's
call that was in flight at a kill was held only in the dead process, and is gone (released); a
fan-out's hold stays until its ``sub_call`` is re-run and settles it, so it is neither lost nor
counted twice.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rlm_graph.graph.settings import Limits
from rlm_graph.graph.state import Usage, total_cost, total_tokens

#: The whole-tree budgets the ledger enforces, in the order a refusal names them.
BUDGETS = ("max_subcalls", "max_tokens", "max_cost_usd")


class BudgetSpent(Exception):
    """A call's reservation does not fit what is left of a budget (not an error: the graph ends the run)."""

    def __init__(self, limit: str) -> None:
        super().__init__(f"budget spent ({limit})")
        self.limit = limit


@dataclass(frozen=True)
class Spend:
    """An amount in every budget at once: tokens (input + output), cost in USD, sub-calls."""

    tokens: int = 0
    cost: float = 0.0
    calls: int = 0

    def __add__(self, other: Spend) -> Spend:
        return Spend(self.tokens + other.tokens, round(self.cost + other.cost, 10), self.calls + other.calls)

    def __sub__(self, other: Spend) -> Spend:
        return Spend(self.tokens - other.tokens, round(self.cost - other.cost, 10), self.calls - other.calls)

    def as_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "cost_usd": self.cost, "calls": self.calls}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Spend:
        data = data or {}
        return cls(int(data.get("tokens") or 0), float(data.get("cost_usd") or 0.0), int(data.get("calls") or 0))


def spend_of(usage: Usage | None, calls: int = 0) -> Spend:
    """What a usage record (and ``calls`` sub-calls) spent; unknown costs count as zero."""
    return Spend(total_tokens(usage), round(total_cost(usage), 10), calls)


def total_of(spends: Iterable[Spend]) -> Spend:
    out = Spend()
    for s in spends:
        out = out + s
    return out


def over(limits: Limits, amount: Spend) -> str | None:
    """The first whole-tree budget that ``amount`` exceeds, or None."""
    if limits.max_subcalls is not None and amount.calls > limits.max_subcalls:
        return "max_subcalls"
    if limits.max_tokens is not None and amount.tokens > limits.max_tokens:
        return "max_tokens"
    if limits.max_cost_usd is not None and amount.cost > limits.max_cost_usd + 1e-12:
        return "max_cost_usd"
    return None


def worst_case(
    prompt_tokens: int,
    *,
    label: str,
    reply_cap: int,
    prices: Mapping[str, Any] | None = None,
    rate: float | None = None,
    calls: int = 0,
) -> Spend:
    """A call's worst case: its prompt's tokens plus the reply cap, priced by the table (or by
    ``rate``, USD per token, learned from a provider's reported costs); zero cost when neither."""
    tokens = prompt_tokens + reply_cap
    cost = 0.0
    price = (prices or {}).get(label)
    if price is not None:
        per_in, per_out = float(price[0]), float(price[1])
        cost = prompt_tokens * per_in / 1e6 + reply_cap * per_out / 1e6
    elif rate:
        cost = tokens * rate
    return Spend(tokens, math.ceil(cost * 1e10) / 1e10, calls)


@dataclass
class _Book:
    """One run's part of a tree's ledger.

    ``holding`` is the sum of ``held``, kept as holds come and go (:meth:`hold`, :meth:`take`):
    a fan-out reserves its prompts one by one, each checked against the total, and summing every
    hold for each of them cost time quadratic in the fan-out's width. Every amount is a multiple
    of 1e-10 USD rounded to it at each step, so the running sum is the one a fresh sum gives.
    """

    parent: str | None
    settled: Spend = Spend()
    held: dict[str, Spend] = field(default_factory=dict)
    holding: Spend = Spend()

    def __post_init__(self) -> None:
        self.holding = total_of(self.held.values())

    def hold(self, key: str, amount: Spend) -> None:
        previous = self.held.get(key)
        if previous is not None:
            self.holding = self.holding - previous
        self.held[key] = amount
        self.holding = self.holding + amount

    def take(self, key: str) -> Spend:
        amount = self.held.pop(key)
        self.holding = self.holding - amount if self.held else Spend()
        return amount

    def total(self) -> Spend:
        return self.settled + self.holding


class Ledger:
    """The budgets of one tree of runs: books per run, reservations checked against them all.

    Thread-safe: parallel ``sub_call`` tasks and the child runs inside them reserve concurrently.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._books: dict[str, _Book] = {}
        #: USD per token seen in reported costs, by model label (for providers priced by no table).
        self.rates: dict[str, float] = {}

    # -- reading ---------------------------------------------------------------------------
    def total(self) -> Spend:
        """Settled plus held, over every book."""
        with self._lock:
            return self._total()

    def _total(self) -> Spend:
        return total_of(b.total() for b in self._books.values())

    def held(self, run: str | None = None) -> Spend:
        """What is reserved and not yet settled (in one run's book, or in all)."""
        with self._lock:
            books = [self._books[run]] if run is not None and run in self._books else ([] if run is not None else list(self._books.values()))
            return total_of(b.holding for b in books)

    def book(self, run: str) -> Spend:
        """One run's settled spend plus its holds."""
        with self._lock:
            b = self._books.get(run)
            return Spend() if b is None else b.total()

    def has(self, run: str) -> bool:
        with self._lock:
            return run in self._books

    # -- books -----------------------------------------------------------------------------
    def sync(self, run: str, *, parent: str | None, settled: Spend, held: Mapping[str, Spend]) -> None:
        """Set a run's book to what its checkpointed state says.

        Called by a node that sees the run's state: none of the run's children can be running
        then, so books left by children of this run (a child whose run failed) are dropped too.
        """
        with self._lock:
            self._drop_children(run)
            self._books[run] = _Book(parent, settled, dict(held))

    def ensure(
        self,
        run: str,
        *,
        parent: str | None,
        settled: Spend,
        finished: Callable[[], Iterable[tuple[Spend, Spend]]] | None = None,
    ) -> bool:
        """Open a run's book from a snapshot if this process has none (True if it opened one).

        A ``sub_call`` task re-run after a kill sees only its task, not its run's state; the
        task carries the run's spend at the fan-out with every hold of the fan-out folded in.
        ``finished`` gives ``(actual, hold)`` of the fan-out's tasks that finished before the
        kill (their writes wait in the checkpoint); it is read under the ledger's lock, so no
        task of this process can settle in between and be counted twice.
        """
        with self._lock:
            if run in self._books:
                return False
            book = self._books[run] = _Book(parent, settled, {})
            for actual, hold in finished() if finished is not None else ():
                book.settled = book.settled + actual - hold
            return True

    def close(self, run: str) -> None:
        """Drop a run's book and its children's (the run has ended and been accounted for)."""
        with self._lock:
            self._drop_children(run)
            self._books.pop(run, None)

    def _drop_children(self, run: str) -> None:
        children = [r for r, b in self._books.items() if b.parent == run]
        for child in children:
            self._drop_children(child)
            self._books.pop(child, None)

    def _book(self, run: str) -> _Book:
        book = self._books.get(run)
        if book is None:
            book = self._books[run] = _Book(None)
        return book

    # -- reservations ----------------------------------------------------------------------
    def reserve(self, run: str, key: str, amount: Spend) -> str | None:
        """Hold ``amount`` under ``key`` if it fits every budget; else the name of one it does not fit."""
        with self._lock:
            refusal = over(self.limits, self._total() + amount)
            if refusal is None:
                self._book(run).hold(key, amount)
            return refusal

    def settle(self, run: str, key: str, actual: Spend, *, folded: Spend | None = None) -> None:
        """Replace the hold ``key`` by what the call really spent.

        ``folded``: the hold as the task knew it, for a book opened from a snapshot, where the
        hold is part of the settled amount rather than a hold of its own.
        """
        with self._lock:
            book = self._book(run)
            if key in book.held:
                book.take(key)
                book.settled = book.settled + actual
            else:
                book.settled = book.settled + actual - (folded or Spend())

    def release(self, run: str, key: str, *, folded: Spend | None = None) -> None:
        """Give a hold back unspent (the call was not made, or failed with nothing to count)."""
        self.settle(run, key, Spend(), folded=folded)

    def adopt(self, run: str, key: str, child: str | None, actual: Spend, *, folded: Spend | None = None) -> None:
        """A child run has returned: settle its parent's hold ``key`` with the child's whole spend
        and drop the child's book, in one step (the spend moves, it is never counted twice)."""
        with self._lock:
            if child is not None:
                self._drop_children(child)
                self._books.pop(child, None)
        self.settle(run, key, actual, folded=folded)

    def learn_rate(self, label: str, usage: Usage) -> None:
        """Remember the highest USD-per-token a provider reported for ``label``."""
        entry = (usage or {}).get(label) or {}
        tokens = int(entry.get("input_tokens") or 0) + int(entry.get("output_tokens") or 0)
        cost = entry.get("cost_usd")
        if cost and tokens:
            with self._lock:
                self.rates[label] = max(self.rates.get(label, 0.0), float(cost) / tokens)


_LEDGERS: dict[str, Ledger] = {}
_LEDGERS_LOCK = threading.Lock()


def ledger_for(tree: str, limits: Limits) -> Ledger:
    """The process's ledger for a tree of runs (the root run's id), opened on first use."""
    with _LEDGERS_LOCK:
        ledger = _LEDGERS.get(tree)
        if ledger is None:
            ledger = _LEDGERS[tree] = Ledger(limits)
        return ledger


def drop_ledger(tree: str) -> None:
    """Forget a tree's ledger (its root run has ended; a resume rebuilds it from the state)."""
    with _LEDGERS_LOCK:
        _LEDGERS.pop(tree, None)


@dataclass(frozen=True)
class Account:
    """One run's book in its tree's ledger: what a node reserves and settles through."""

    ledger: Ledger
    run: str

    def reserve(self, key: str, amount: Spend) -> str | None:
        return self.ledger.reserve(self.run, key, amount)

    def settle(self, key: str, actual: Spend, *, folded: Spend | None = None) -> None:
        self.ledger.settle(self.run, key, actual, folded=folded)

    def release(self, key: str, *, folded: Spend | None = None) -> None:
        self.ledger.release(self.run, key, folded=folded)
