"""Build feedback for long TensorRT builds (minutes on a Jetson): ``IProgressMonitor`` phases
where the TensorRT generation has it (10.x+), a spinner thread otherwise (8.5/8.6)."""
from __future__ import annotations

import sys
import threading
import time
from typing import Dict, TextIO


class Spinner:
    """Build feedback where TensorRT has no progress monitor (8.x): elapsed time, refreshed in
    place on a terminal, one line every ``interval`` seconds otherwise."""

    FRAMES = "|/-\\"

    def __init__(self, label: str, stream: TextIO = sys.stderr, interval: float = 15.0) -> None:
        self.label, self.stream, self.interval = label, stream, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = 0.0

    def _run(self) -> None:
        tty = self.stream.isatty()
        frame = 0
        while not self._stop.wait(0.25 if tty else self.interval):
            elapsed = time.monotonic() - self._start
            if tty:
                self.stream.write(f"\r{self.FRAMES[frame % 4]} {self.label}: {elapsed:5.0f} s")
                frame += 1
            else:
                self.stream.write(f"{self.label}: {elapsed:.0f} s elapsed\n")
            self.stream.flush()

    def __enter__(self) -> "Spinner":
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self.stream.isatty():
            self.stream.write("\r" + " " * (len(self.label) + 12) + "\r")


def make_progress_monitor(trt, stream: TextIO = sys.stderr):
    """An ``IProgressMonitor`` (9.0+) printing each build phase and its steps."""

    class PhasePrinter(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._depth: Dict[str, int] = {}
            self._steps: Dict[str, int] = {}
            self._start = time.monotonic()

        def phase_start(self, phase_name, parent_phase, num_steps):
            self._depth[phase_name] = self._depth.get(parent_phase, -1) + 1 if parent_phase else 0
            self._steps[phase_name] = num_steps
            self._print(phase_name, f"start ({num_steps} steps)")

        def step_complete(self, phase_name, step):
            if self._depth.get(phase_name, 0) == 0:
                self._print(phase_name, f"step {step + 1}/{self._steps.get(phase_name, '?')}")
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            self._print(phase_name, "done")

        def _print(self, phase: str, what: str) -> None:
            indent = "  " * self._depth.get(phase, 0)
            stream.write(f"[{time.monotonic() - self._start:7.1f} s] {indent}{phase}: {what}\n")
            stream.flush()

    return PhasePrinter()
