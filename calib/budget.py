"""INT8 is earned: the INT8 graph against the FP32 graph on held-out images, with depth metrics.

The FP32 output is the reference, the comparison :func:`edgedepth.agreement.compare_depth` (the
one every stage uses) and the limits the ``int8`` row of the one budget file
(``configs/budgets/default.yaml``: AbsRel <= 1 % and δ1 agreement >= 0.995 by default); ``--budget FILE``
overrides keys of it. Pixels where FP32 predicts below the spec's ``min_depth`` (outside the
trained range) take no part in the depth metrics; the tensor figures see every pixel. Both graphs
run in ONNX Runtime on the CPU.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from edgedepth.agreement import Agreement, compare_depth
from edgedepth.budget import Budget, load_budget
from edgedepth.calib.calibration_set import calibration_batches
from edgedepth.calib.errors import CalibrationError
from edgedepth.media import evenly_spaced
from edgedepth.onnxrt import cpu_session, run_session
from edgedepth.spec import ModelSpec


def int8_budget(path: Union[str, Path, None] = None) -> Budget:
    """The ``int8`` row of the shipped budget, overridden by the budget file at ``path``."""
    return load_budget("int8", path)


def run_graph(session: object, data: np.ndarray, batch_size: int) -> np.ndarray:
    """Run a single-input ORT session over ``data`` in batches of ``batch_size``."""
    usable = (len(data) // batch_size) * batch_size
    return np.concatenate([run_session(session, batch) for batch in calibration_batches(data[:usable], batch_size)])


class Evaluator:
    """Runs candidate INT8 graphs on the held-out images against the FP32 output (computed once)
    and judges them against ``budget``."""

    def __init__(self, fp32_path: Path, held_out: np.ndarray, spec: ModelSpec, budget: Budget,
                 batch_size: int = 1) -> None:
        if len(held_out) < batch_size:
            raise CalibrationError(f"{len(held_out)} held-out images cannot fill one batch of {batch_size}")
        self.held_out, self.spec, self.budget, self.batch_size = held_out, spec, budget, batch_size
        self.reference = run_graph(cpu_session(fp32_path, error=CalibrationError), held_out, batch_size)

    @property
    def images(self) -> int:
        """Held-out images every full evaluation uses (whole batches)."""
        return len(self.reference)

    def evaluate(self, model: Union[Path, bytes], images: Optional[int] = None) -> Agreement:
        """Agreement of a graph (path or serialized) with FP32 on all held-out images, or on ``images``
        of them spread evenly (the sensitivity search ranks nodes on a subset)."""
        usable = len(self.reference)
        count = usable if images is None else max(self.batch_size, min(images, usable))
        chosen = np.sort(np.asarray(evenly_spaced(usable // self.batch_size, count // self.batch_size)))
        rows = (chosen[:, None] * self.batch_size + np.arange(self.batch_size)[None]).ravel()
        output = run_graph(cpu_session(model, error=CalibrationError), self.held_out[rows], self.batch_size)
        return compare_depth(self.reference[rows], output, min_depth=self.spec.min_depth, budget=self.budget,
                             max_depth=self.spec.max_depth)
