"""Synthetic long-context retrieval tasks: passkey, key-value recall, needle in a haystack.

Pure Python so the same generator makes training samples and the held-out sets. Each task
builds `prompt` (text, no special tokens) and `answer` (text the model must continue with,
always a leading space then digits). Lengths are in tokens of the reference tokenizer and
count the BOS token the model sees first; `count_tokens(text)` is passed in, so the prompts
are sized exactly when the tokenizer exists and approximately (4 characters a token) when not.

Every piece a prompt is glued from begins with a space or a newline and ends with a
non-space character. The tokenizer splits text before a space-led word, so tokenizing the
pieces one by one gives the same tokens as tokenizing the whole prompt, which keeps the
sizing exact and lets the trainer reuse cached counts.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Callable, Sequence

CountTokens = Callable[[str], int]

TASKS = ("passkey", "kv", "niah")

# The filler of the passkey task of Mohtashami and Jaggi (2023), one sentence a piece.
PASSKEY_FILLER = (
    " The grass is green.",
    " The sky is blue.",
    " The sun is yellow.",
    " Here we go.",
    " There and back again.",
)
PASSKEY_INTRO = (
    "There is an important piece of information hidden inside a lot of irrelevant text."
    " Find it and memorize it. I will quiz you about it."
)

# Keys of the needle task: names that the KJV text does not use, so the needle is the
# only place the key occurs.
NEEDLE_NAMES = (
    "Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Dublin", "Madrid", "Quito", "Nairobi",
    "Seoul", "Vienna", "Lisbon", "Prague", "Havana", "Kyoto", "Berlin", "Boston", "Denver",
    "Sydney", "Toronto", "Chicago", "Warsaw", "Helsinki", "Zurich", "Geneva", "Munich",
    "Milan", "Naples", "Venice", "Brussels", "Amsterdam", "Stockholm", "Montreal", "Dallas",
    "Seattle", "Portland", "Austin", "Phoenix", "Atlanta", "Miami", "Houston", "Oxford",
    "Cambridge", "Glasgow", "Bristol", "Leeds", "Manchester", "Liverpool", "Sheffield",
    "Osaka", "Nagoya", "Manila", "Jakarta", "Hanoi", "Bangkok", "Delhi", "Mumbai",
    "Karachi", "Lagos", "Accra", "Dakar", "Tunis", "Algiers", "Casablanca", "Santiago",
    "Bogota", "Caracas", "Montevideo", "Asuncion", "Panama",
)


@dataclass(frozen=True)
class Sample:
    task: str
    length: int  # target length in tokens (BOS included), the sample is at most this long
    prompt: str
    answer: str
    # Training only: more (question, answer) pairs appended after the first answer, so one
    # sequence teaches several look-ups. Empty for held-out prompts.
    extra: tuple[tuple[str, str], ...] = ()

    def full_text(self) -> str:
        return self.prompt + self.answer + "".join(q + a for q, a in self.extra)


def estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _fill(
    fixed_tokens: int, target: int, units: Sequence[str], count: CountTokens
) -> list[str]:
    """Take units in order while the total stays within target (units are counted once each)."""
    taken: list[str] = []
    used = fixed_tokens
    for unit in units:
        n = count(unit)
        if used + n > target:
            break
        taken.append(unit)
        used += n
    return taken


def passkey(rng: random.Random, target: int, count: CountTokens) -> Sample:
    key = digits(rng, 5)
    needle = f" The pass key is {key}. Remember it. {key} is the pass key."
    query = " What is the pass key? The pass key is"
    answer = f" {key}"
    fixed = 1 + count(PASSKEY_INTRO) + count(needle) + count(query) + count(answer)
    filler = [PASSKEY_FILLER[i % len(PASSKEY_FILLER)] for i in range(4 * target)]
    body = _fill(fixed, target, filler, count)
    depth = rng.randint(0, len(body))
    prompt = PASSKEY_INTRO + "".join(body[:depth]) + needle + "".join(body[depth:]) + query
    return Sample("passkey", target, prompt, answer)


def _kv_key(rng: random.Random, used: set[str]) -> str:
    while True:
        key = "".join(rng.choice(string.ascii_lowercase) for _ in range(3))
        if key not in used:
            used.add(key)
            return key


KV_INTRO = "Below is a list of keys and their values. Remember them."


def kv(
    rng: random.Random, target: int, count: CountTokens, extra_queries: int = 0
) -> Sample:
    """Dense key-value list (3-letter keys, 4-digit values), then one query (+ extra ones)."""
    used: set[str] = set()
    # Each line is about 10 tokens; make plenty and keep those that fit.
    pairs = [(_kv_key(rng, used), digits(rng, 4)) for _ in range(max(4, target // 6))]
    lines = [f"\nkey {k}: {v}" for k, v in pairs]
    order = list(range(len(pairs)))
    rng.shuffle(order)

    def query_of(i: int) -> tuple[str, str]:
        return f"\nQuery: key {pairs[i][0]}:", f" {pairs[i][1]}"

    # The query count is reserved with a worst-case line so the chosen key always fits.
    q_tokens = count("\n\nQuery: key xyz:") + count(" 0000") + 1
    fixed = 1 + count(KV_INTRO) + q_tokens * (1 + extra_queries)
    body = _fill(fixed, target, lines, count)
    if not body:
        raise ValueError(f"kv: target {target} tokens leaves no room for a pair")
    n = len(body)
    chosen = [i for i in order if i < n][: 1 + extra_queries]
    q, a = query_of(chosen[0])
    prompt = KV_INTRO + "".join(body) + "\n" + q
    extra = tuple(query_of(i) for i in chosen[1:])
    return Sample("kv", target, prompt, a, extra)


def niah(
    rng: random.Random, target: int, count: CountTokens, verses: Sequence[str]
) -> Sample:
    """A magic-number needle hidden at a random depth in consecutive KJV verses."""
    name = rng.choice(NEEDLE_NAMES)
    number = digits(rng, 5)
    needle = f" The magic number of {name} is {number}."
    query = (
        f"\nQuestion: What is the magic number of {name}?"
        f" Answer: The magic number of {name} is"
    )
    answer = f" {number}"
    fixed = 1 + count(needle) + count(query) + count(answer)
    start = rng.randrange(len(verses))
    window = [" " + verses[(start + i) % len(verses)] for i in range(target)]
    body = _fill(fixed, target, window, count)
    depth = rng.randint(0, len(body))
    prompt = "".join(body[:depth]) + needle + "".join(body[depth:]) + query
    return Sample("niah", target, prompt, answer)


def make(
    task: str,
    rng: random.Random,
    target: int,
    count: CountTokens,
    verses: Sequence[str],
    extra_queries: int = 0,
) -> Sample:
    if task == "passkey":
        return passkey(rng, target, count)
    if task == "kv":
        return kv(rng, target, count, extra_queries)
    if task == "niah":
        return niah(rng, target, count, verses)
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def load_verses(path: str) -> list[str]:
    with open(path, encoding="ascii") as f:
        return [line.strip() for line in f if line.strip()]


def held_out_sets(
    lengths: Sequence[int],
    per_cell: int,
    count: CountTokens,
    heldout_verses: Sequence[str],
    seed: int,
) -> list[Sample]:
    """The held-out prompts: one seeded stream per (task, length) so cells are independent."""
    samples: list[Sample] = []
    for ti, task in enumerate(TASKS):
        for length in lengths:
            rng = random.Random(seed * 1_000_003 + ti * 10_007 + length)
            for _ in range(per_cell):
                samples.append(make(task, rng, length, count, heldout_verses))
    return samples
