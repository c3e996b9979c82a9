"""Per-stage timings with percentiles, in constant memory so a day-long stream does not grow."""
from __future__ import annotations

import collections
import random
import threading
from typing import Deque, Dict, Iterable, Optional

import numpy as np

#: Stages timed by depth-run, in pipeline order; "end_to_end" runs from capture to render done.
STAGES = ("capture", "preprocess", "infer", "postprocess", "render", "end_to_end")


class TimingRecorder:
    """Durations of one stage: exact count/mean/max, percentiles over a bounded uniform sample.

    Up to ``capacity`` values are kept exactly; after that reservoir sampling (Vitter's
    algorithm R) keeps a uniform sample, so the percentiles stay unbiased and memory stays fixed.
    """

    def __init__(self, capacity: int = 32768, seed: int = 0) -> None:
        # Filled (not np.empty/zeros, which the OS maps lazily) so the memory is resident from the
        # start: a long run's RSS then stays flat instead of creeping up page by page.
        self._values = np.full(capacity, 0.0, dtype=np.float64)
        self._capacity = capacity
        self._random = random.Random(seed)
        self.count = 0
        self.total = 0.0
        self.maximum = 0.0

    def add(self, seconds: float) -> None:
        """Record one duration in seconds."""
        if self.count < self._capacity:
            self._values[self.count] = seconds
        else:
            slot = self._random.randrange(self.count + 1)
            if slot < self._capacity:
                self._values[slot] = seconds
        self.count += 1
        self.total += seconds
        self.maximum = max(self.maximum, seconds)

    def summary_ms(self) -> Dict[str, float]:
        """count, mean, p50, p90, p99 and max in milliseconds (zeros when empty)."""
        if self.count == 0:
            return {"count": 0, "mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
        sample = self._values[: min(self.count, self._capacity)] * 1000.0
        p50, p90, p99 = np.percentile(sample, [50, 90, 99])
        return {
            "count": self.count,
            "mean": round(self.total / self.count * 1000.0, 4),
            "p50": round(float(p50), 4),
            "p90": round(float(p90), 4),
            "p99": round(float(p99), 4),
            "max": round(self.maximum * 1000.0, 4),
        }


class StageTimings:
    """One :class:`TimingRecorder` per stage; safe to add from several pipeline threads."""

    def __init__(self, stages: Iterable[str] = STAGES, capacity: int = 32768) -> None:
        self._recorders = {stage: TimingRecorder(capacity) for stage in stages}
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._recorders[stage].add(seconds)

    def summary_ms(self) -> Dict[str, Dict[str, float]]:
        with self._lock:
            return {stage: recorder.summary_ms() for stage, recorder in self._recorders.items()}


class RateMeter:
    """Frames per second over the last ``window`` frames (for the on-screen overlay)."""

    def __init__(self, window: int = 30) -> None:
        self._times: Deque[float] = collections.deque(maxlen=window)

    def tick(self, now: float) -> Optional[float]:
        """Record a frame completed at ``now``; the rate over the window, None until two frames."""
        self._times.append(now)
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else None


def format_summary(summary: Dict[str, Dict[str, float]]) -> str:
    """A small table of the stage percentiles for the terminal."""
    lines = [f"{'stage':<12}{'count':>8}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'mean ms':>10}"]
    for stage, row in summary.items():
        lines.append(
            f"{stage:<12}{int(row['count']):>8}{row['p50']:>10.2f}{row['p90']:>10.2f}{row['p99']:>10.2f}{row['mean']:>10.2f}"
        )
    return "\n".join(lines)
