"""Comparing state dicts, so a weights file that does not fit is refused with a one-line reason."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> str:
    """``""`` when ``given`` fits ``expected`` key for key and shape for shape, else a summary.

    The summary reads like ``"2 missing keys (a, b), 0 unexpected keys, 1 mis-shaped keys (c:
    [64, 3, 7, 7] vs [64, 3, 3, 3])"`` and is meant to be embedded in an error message.
    """
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mis_shaped = [
        f"{key}: {list(given[key].shape)} vs {list(expected[key].shape)}"
        for key in expected
        if key in given and given[key].shape != expected[key].shape
    ]
    if not (missing or unexpected or mis_shaped):
        return ""
    return ", ".join(
        (_summarise(missing, "missing"), _summarise(unexpected, "unexpected"), _summarise(mis_shaped, "mis-shaped"))
    )


def _summarise(keys: Sequence[str], what: str, shown: int = 3) -> str:
    if not keys:
        return f"0 {what} keys"
    more = ", ..." if len(keys) > shown else ""
    return f"{len(keys)} {what} keys ({', '.join(keys[:shown])}{more})"
