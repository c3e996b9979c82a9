"""When the INT8 graph misses its budget: find the nodes that hurt most and keep them in higher precision.

Keeping a node in higher precision is graph surgery on the fully quantized graph
(:func:`edgedepth.calib.qdq.keep_float_inputs`): no recalibration, so every measurement is one
ONNX Runtime session on held-out images.

1. Measure the error each INT8 node adds: the graph with only that node in INT8 (every other
   candidate kept float) against FP32, AbsRel on a subset of the held-out images. The quantization
   noise of each node's activation inputs, ``rms(x - dq(q(x))) / rms(x)`` with the quantizer's
   scales (one FP32 run), is reported beside it.
2. With ``--sensitivity-top-k K`` only K nodes are measured, picked by a pre-ranking: runs of
   about sqrt(n) neighbouring nodes measured together (:func:`group_scores`), then noise.
3. Greedy fallback: keep the most harmful node in higher precision, check the full budget on
   all held-out images; repeat until it passes or ``--max-fallback`` nodes were kept.

Steps 2-3 are pure logic over ``measure`` / ``trial`` callables (:func:`rank_nodes`,
:func:`greedy_fallback`), tested without any quantizer.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgedepth.agreement import Agreement
from edgedepth.calib.calibration_set import calibration_batches
from edgedepth.calib.errors import CalibrationError
from edgedepth.export.onnx_info import producers
from edgedepth.onnxrt import cpu_session

#: Node name -> why it stays in higher precision.
KeptNodes = Dict[str, str]
DEFAULT_MAX_FALLBACK = 8
DEFAULT_TOP_K = 0  # 0 = measure every INT8 node
#: Held-out images the per-node measurements use (the greedy steps use all of them).
RANKING_IMAGES = 8


@dataclass
class NodeSensitivity:
    """How much one INT8 node hurts: its input noise and, when measured, the AbsRel it adds alone."""

    node: str
    op_type: str
    noise: float
    abs_rel_alone: Optional[float] = None  # AbsRel vs FP32 with only this node in INT8

    def reason(self) -> str:
        if self.abs_rel_alone is not None:
            return f"fallback: in INT8 alone it adds AbsRel {self.abs_rel_alone:.3%} (input noise {self.noise:.2%})"
        return f"fallback: input quantization noise {self.noise:.2%}"


@dataclass
class FallbackStep:
    """One greedy step: the node newly kept and the figures that followed."""

    node: str
    figures: Dict[str, Optional[float]]  # JSON-safe: a non-finite figure is None
    failures: List[str]

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class FallbackResult:
    """What the search ranked, what it tried, and how it ended."""

    ranking: List[NodeSensitivity] = field(default_factory=list)
    steps: List[FallbackStep] = field(default_factory=list)
    passed: bool = False
    stopped: str = ""
    kept: KeptNodes = field(default_factory=dict)

    def to_dict(self) -> Dict[str, object]:
        return {
            "ranking": [asdict(item) for item in self.ranking],
            "steps": [dict(asdict(step), passed=step.passed) for step in self.steps],
            "passed": self.passed,
            "stopped": self.stopped,
        }


# ---------------------------------------------------------------------------------------------
# Pre-ranking by activation quantization noise
# ---------------------------------------------------------------------------------------------


def _constant(model, name: str) -> Optional[np.ndarray]:
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    return None


def _quantized_activation(model, writers, tensor: str) -> Optional[Tuple[str, float, float, Tuple[int, int]]]:
    """``(float tensor, scale, zero point, (qmin, qmax))`` when ``tensor`` is DQ(Q(x)) with a per-tensor scale."""
    dq = writers.get(tensor)
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in writers:
        return None
    quantize = writers[dq.input[0]]
    if quantize.op_type != "QuantizeLinear":
        return None
    scale = _constant(model, quantize.input[1])
    has_zero = len(quantize.input) > 2 and quantize.input[2]
    zero = _constant(model, quantize.input[2]) if has_zero else np.zeros((), np.int8)
    if scale is None or zero is None or scale.size != 1:
        return None
    info = np.iinfo(zero.dtype)
    return quantize.input[0], float(scale.ravel()[0]), float(zero.ravel()[0]), (int(info.min), int(info.max))


def relative_noise(values: np.ndarray, scale: float, zero: float, limits: Tuple[int, int]) -> float:
    """``rms(x - dq(q(x))) / rms(x)`` for one quantized tensor."""
    quantized = np.clip(np.rint(values / scale) + zero, limits[0], limits[1])
    error = values - (quantized - zero) * scale
    return float(np.sqrt(np.mean(error ** 2)) / max(float(np.sqrt(np.mean(values ** 2))), 1e-12))


def _float_values(fp32_path: Path, tensors: Sequence[str], images: np.ndarray, input_name: str,
                  batch_size: int) -> Dict[str, np.ndarray]:
    """The FP32 graph's values of ``tensors`` on ``images`` (extra graph outputs)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(fp32_path))
    present = {o.name for o in model.graph.output}
    wanted = [name for name in tensors if name != input_name]
    model.graph.output.extend(
        helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in wanted if n not in present
    )
    session = cpu_session(model.SerializeToString(), error=CalibrationError)
    batches = calibration_batches(images, batch_size)
    runs = [session.run(wanted, {input_name: batch}) for batch in batches]
    values = {name: np.concatenate([run[i] for run in runs]) for i, name in enumerate(wanted)}
    if input_name in tensors:
        values[input_name] = np.concatenate(batches)
    return values


def activation_noise(fp32_path: Path, qdq_model, candidates: Sequence[str], images: np.ndarray,
                     input_name: str, batch_size: int = 1) -> Dict[str, float]:
    """Per candidate node: the largest relative quantization noise among its INT8 activation inputs."""
    writers = producers(qdq_model)
    wanted = set(candidates)
    inputs: Dict[str, List[Tuple[str, float, float, Tuple[int, int]]]] = {name: [] for name in candidates}
    for node in qdq_model.graph.node:
        if node.name in wanted:
            found = (_quantized_activation(qdq_model, writers, tensor) for tensor in node.input)
            inputs[node.name] = [item for item in found if item is not None]
    tensors = sorted({item[0] for items in inputs.values() for item in items})
    values = _float_values(fp32_path, tensors, images, input_name, batch_size) if tensors else {}
    return {
        node: max((relative_noise(values[t], s, z, lim) for t, s, z, lim in items), default=0.0)
        for node, items in inputs.items()
    }


# ---------------------------------------------------------------------------------------------
# Ranking and the greedy fallback
# ---------------------------------------------------------------------------------------------


def group_scores(candidates: Sequence[str], measure_group: Callable[[Sequence[str]], Agreement]) -> Dict[str, float]:
    """Per node, the AbsRel of its group alone in INT8: candidates (in graph order) cut into about
    sqrt(n) runs of neighbouring nodes, each measured once. A cheap pre-ranking that, unlike input
    noise, sees how much of a node's error reaches the output."""
    size = max(1, int(round(math.sqrt(len(candidates)))))
    scores: Dict[str, float] = {}
    for start in range(0, len(candidates), size):
        group = list(candidates[start:start + size])
        error = measure_group(group)["abs_rel"]
        scores.update({name: error for name in group})
    return scores


def rank_nodes(
    candidates: Sequence[str],
    op_types: Dict[str, str],
    noise: Dict[str, float],
    measure: Callable[[str], Agreement],
    top_k: int = DEFAULT_TOP_K,
    prerank: Optional[Dict[str, float]] = None,
) -> List[NodeSensitivity]:
    """Candidates, most harmful first. The ``top_k`` first by ``prerank`` (then noise) are measured
    with ``measure(node)`` (figures with only that node in INT8) and sorted by the AbsRel it adds;
    the unmeasured rest follow in pre-rank order. ``top_k`` 0 measures every candidate."""
    prerank = prerank or {}
    order = sorted(candidates, key=lambda name: (-prerank.get(name, 0.0), -noise.get(name, 0.0)))
    limit = len(order) if top_k <= 0 else top_k
    alone = [(name, measure(name)["abs_rel"]) for name in order[:limit]]
    alone.sort(key=lambda pair: -pair[1])
    measured = [NodeSensitivity(name, op_types.get(name, "?"), noise.get(name, 0.0), abs_rel)
                for name, abs_rel in alone]
    rest = [NodeSensitivity(name, op_types.get(name, "?"), noise.get(name, 0.0)) for name in order[limit:]]
    return measured + rest


def greedy_fallback(
    ranking: Sequence[NodeSensitivity],
    kept: KeptNodes,
    trial: Callable[[KeptNodes], Agreement],
    max_fallback: int = DEFAULT_MAX_FALLBACK,
) -> FallbackResult:
    """Keep ranked nodes in higher precision one at a time until ``trial(kept)`` is within budget.

    ``trial`` re-quantizes with the given nodes kept and returns its judged agreement. Stops at the
    first step within budget, after ``max_fallback`` nodes, or when no candidate is left.
    """
    result = FallbackResult(ranking=list(ranking), kept=dict(kept))
    for item in ranking:
        if len(result.steps) >= max_fallback:
            result.stopped = f"--max-fallback {max_fallback} reached"
            return result
        result.kept[item.node] = item.reason()
        agreement = trial(dict(result.kept))
        step = FallbackStep(item.node, agreement.to_dict(), agreement.failures)
        result.steps.append(step)
        if step.passed:
            result.passed, result.stopped = True, f"budget met after keeping {len(result.steps)} node(s)"
            return result
    result.stopped = "no INT8 node left to keep" if ranking else "no INT8 node to keep in higher precision"
    return result
