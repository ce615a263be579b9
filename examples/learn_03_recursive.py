"""Learning path, phase 3: judgements code cannot make go to sub-calls.

Whether a review is happy or not is not a string search: the word "good" appears in "not good".
The RLM's code loops over the reviews and asks a sub-model about each one with
``llm_query_batched`` (many ``llm_query`` calls at once, in parallel), then counts the replies
with code. The root model never reads the reviews; each sub-call reads one. Run:

    python examples/learn_03_recursive.py
"""

from __future__ import annotations

from _common import banner, make_rlm, report, run_or_explain

# (review, is it positive?) Short and plain, so a small sub-model judges each one reliably.
REVIEWS = [
    ("Arrived fast and works perfectly. I love it.", True),
    ("Broke after two days. Waste of money.", False),
    ("Great sound, comfortable, and the battery lasts all week.", True),
    ("The screen is cracked and support never answered my emails.", False),
    ("Exactly as described. Would buy again!", True),
    ("Not good at all: it smells of plastic and the strap snapped.", False),
    ("My kids adore it and it was easy to set up.", True),
    ("Terrible. It stopped charging after one week.", False),
    ("Excellent value, beautiful design, five stars.", True),
    ("Very happy with this purchase, it exceeded my expectations.", True),
]
QUESTION = (
    "How many of the reviews in the list `context` are positive? A keyword search cannot tell. "
    "Use replies = llm_query_batched(prompts) with one prompt per review "
    '("Is this review positive? Answer yes or no.\\n" + review), then count the replies that start '
    "with yes. Answer with a number."
)


def main() -> None:
    context = [text for text, _ in REVIEWS]
    expected = sum(positive for _, positive in REVIEWS)
    rlm = make_rlm(max_iterations=8, verbose=True)
    banner(rlm, "phase 3: sub-calls with llm_query_batched")
    result = rlm.completion(context, QUESTION)
    report(result, expected)


if __name__ == "__main__":
    run_or_explain(main)
