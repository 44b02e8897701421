"""Argument types for the subcommand parsers: each checks one kind of value where argparse reads
it, so a nonsense value is one usage error (``error:`` and ``hint:`` lines, exit status 2) before
any model is built.

    --batch 0            positive_int: a whole number from 1 to 2**31 - 1
    --depth -5           tree_depth: -1 (all) or a whole number from 0
    --min-time nan       positive_float: a finite number above 0
    --threshold -5       non_negative_float: a finite number from 0
    --dtype ''           non_empty: a non-empty word
    --generate 16+x      prompt_plus_new: PROMPT+NEW, two positive whole numbers
    --device gpu         count_device: cpu, cuda, meta, cuda:N or cuda:NAME (a GPU of the device table)
"""

from __future__ import annotations

import argparse
import math
import re

MAX_INT = 2**31 - 1        # larger batches, lengths, counts or threads are typos, and overflow shapes


def _int(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number; expected {what}") from None
    return value


def positive_int(text: str) -> int:
    value = _int(text, "a positive whole number")
    if not 1 <= value <= MAX_INT:
        raise argparse.ArgumentTypeError(f"{text} is out of range; expected a whole number from 1 to {MAX_INT:,}")
    return value


def positive_int_list(text: str) -> list[int]:
    """``1,2,4`` → [1, 2, 4]: positive whole numbers separated by commas."""
    parts = [p.strip() for p in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"'{text}' is not a list such as 1,2,4")
    return [positive_int(p) for p in parts]


def tree_depth(text: str) -> int:
    value = _int(text, "a depth (-1 for all)")
    if not -1 <= value <= MAX_INT:
        raise argparse.ArgumentTypeError(f"{text} is out of range; expected -1 (all levels) or a depth from 0")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


def positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is out of range; expected a number above 0")
    return value


def non_negative_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is out of range; expected a number from 0")
    return value


def prompt_plus_new(text: str) -> tuple[int, int]:
    """'512+128' → (512, 128): prompt tokens and new tokens, each from 1 to ``MAX_INT``."""
    match = re.fullmatch(r"\s*(\d+)\s*\+\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"cannot read '{text}'; write it as PROMPT+NEW, e.g. 512+128")
    prompt, new = int(match.group(1)), int(match.group(2))
    if not (1 <= prompt <= MAX_INT and 1 <= new <= MAX_INT):
        raise argparse.ArgumentTypeError(f"'{text}' is out of range; PROMPT and NEW are whole numbers from 1 "
                                         f"to {MAX_INT:,}")
    return prompt, new


def non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the value is empty")
    return text.strip()


__all__ = ["MAX_INT", "non_empty", "non_negative_float", "positive_float", "positive_int", "positive_int_list", "prompt_plus_new",
           "tree_depth"]


def count_device(text: str) -> str:
    """cpu, cuda, meta, cuda:N, or cuda:NAME (the name is checked against the device table later,
    with close matches)."""
    value = text.strip()
    low = value.lower()
    if low in ("cpu", "cuda", "meta") or re.fullmatch(r"cuda:[0-9]+", low):
        return low
    if low.startswith("cuda:") and value[5:].strip():
        return "cuda:" + value[5:].strip()
    raise argparse.ArgumentTypeError(f"'{text}' is not a device; expected cpu, cuda, or cuda:NAME for a GPU of the "
                                     "device table (e.g. cuda:h100)")
