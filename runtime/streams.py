"""How many frames depth-run infers at once, and with how many CPU threads each.

On the CPU, one ONNX Runtime run with N intra-op threads splits every layer over N cores and
waits for the slowest part: when the decoder (or the render thread) takes one of those cores for
a moment, the whole layer waits for it. On 2 cores at 96x128 that cost depth-run 10% of the bare
backend's frame rate on a 768x576 video (docs/RUNTIME.md, "Throughput on the CPU"). Two frames in
flight, each on its own thread with half the cores, share the cores without that barrier: a
decoder slice delays one frame, not both cores, and together they run faster than one
two-thread call. A live source keeps one frame in flight (its frames must stay fresh), and a
requested ``--threads`` is kept as it is asked.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from edgedepth.errors import UsageError

#: Frames in flight for a file on ONNX Runtime's CPU provider.
CPU_FILE_STREAMS = 2


@dataclass(frozen=True)
class InferencePlan:
    """Frames inferred at once (one inferer thread each) and the CPU threads of each (None: the
    backend's default)."""

    streams: int = 1
    threads: Optional[int] = None


def physical_cores() -> int:
    """Cores this process may run on, SMT siblings counted once (ONNX Runtime's default thread count)."""
    cpus: Sequence[int] = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not cpus:
        return max(1, os.cpu_count() or 1)
    return max(1, len({_siblings(cpu) for cpu in cpus}))


def _siblings(cpu: int) -> str:
    try:
        return Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip()
    except OSError:  # no sysfs topology (a container without it): count the CPU as a core
        return str(cpu)


def runs_on_cpu(providers: Optional[List[str]] = None) -> bool:
    """Whether ONNX Runtime would run the model on its CPU provider (no GPU provider in this build,
    or ``providers`` asks for the CPU first)."""
    from edgedepth.onnxrt import import_onnxruntime
    from edgedepth.runtime.ort_backend import select_providers

    available = import_onnxruntime("choosing depth-run's CPU threads").get_available_providers()
    return select_providers(available, providers)[0] == "CPUExecutionProvider"


def plan_inference(backend: str, live: bool, threads: Optional[int] = None, streams: Optional[int] = None,
                   providers: Optional[List[str]] = None) -> InferencePlan:
    """What depth-run runs: a requested ``streams``/``threads`` as asked; otherwise two frames at
    once, each on half the cores, for a file on ONNX Runtime's CPU provider, and one frame with the
    backend's default threads for everything else."""
    if streams is not None and streams > 1 and backend != "onnxruntime":
        raise UsageError(f"--streams {streams} needs an ONNX Runtime model (.onnx); the {backend} backend runs "
                         "one frame at a time: drop --streams")
    if streams is None:
        streams = CPU_FILE_STREAMS if _several_streams_pay(backend, live, threads, providers) else 1
    if threads is None and streams > 1:
        threads = max(1, physical_cores() // streams)
    return InferencePlan(streams, threads)


def _several_streams_pay(backend: str, live: bool, threads: Optional[int], providers: Optional[List[str]]) -> bool:
    if backend != "onnxruntime" or live or threads is not None or physical_cores() < CPU_FILE_STREAMS:
        return False
    return runs_on_cpu(providers)
