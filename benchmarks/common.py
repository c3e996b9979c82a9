"""Helpers shared by the benchmarks: side-by-side timing and a representative checkpoint.

Runners are timed in rotating order: that spreads a noisy neighbour's load evenly over them, so
their ratio stays meaningful on a shared machine.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Dict, List


def timed_ms(run: Callable[[], object]) -> float:
    """Wall time of one call, in milliseconds."""
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1000.0


def interleaved_times(
    runners: Dict[str, Callable[[], object]], repetitions: int, warmup: int
) -> Dict[str, List[float]]:
    """Per runner, ``repetitions`` timings (ms) taken in rotating order after ``warmup`` calls each."""
    for run in runners.values():
        for _ in range(warmup):
            run()
    names = list(runners)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for rep in range(repetitions):
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            times[name].append(timed_ms(runners[name]))
    return times


def random_checkpoint(path: Path, height: int, width: int) -> Path:
    """A randomly initialised ResNet18 checkpoint at ``height`` x ``width`` (latency does not
    depend on the weights), in eval mode."""
    from edgedepth.spec import ModelSpec
    from edgedepth.training.checkpoint import save_checkpoint
    from edgedepth.training.model import create_model

    spec = ModelSpec(height, width)
    save_checkpoint(path, create_model(spec).eval(), spec)
    return path
