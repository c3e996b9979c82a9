"""Fixtures for the runtime tests: tiny self-describing ONNX depth models and small videos."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import cv2
import numpy as np
import pytest

from edgedepth.camera import PinholeIntrinsics
from edgedepth.spec import ModelSpec

from media_helpers import write_video


@dataclass
class TinyModel:
    """An ONNX file computing ``sigmoid(w . x + b) * max_depth`` per pixel, and that formula in numpy."""

    path: Path
    spec: ModelSpec
    weight: np.ndarray  # (3,)
    bias: float

    def reference(self, batch: np.ndarray) -> np.ndarray:
        """What the model must output for a preprocessed N x 3 x H x W batch."""
        logits = np.einsum("c,nchw->nhw", self.weight, batch.astype(np.float64)) + self.bias
        return (1.0 / (1.0 + np.exp(-logits)) * self.spec.max_depth)[:, None].astype(np.float32)


def build_tiny_onnx(path: Path, height: int = 64, width: int = 96, dynamic: bool = False, max_depth: float = 10.0,
                    seed: int = 0, with_spec: bool = True, fp16_io: bool = False,
                    intrinsics: Optional[PinholeIntrinsics] = None) -> TinyModel:
    """Write a 1x1-conv -> sigmoid -> x max_depth ONNX depth model carrying a ModelSpec
    (``fp16_io``: the whole graph, inputs and outputs included, in FP16, as AutoCast writes with
    ``keep_io_types=False``); ``intrinsics``: the training camera its spec records (at its input size)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dtype, elem = (np.float16, TensorProto.FLOAT16) if fp16_io else (np.float32, TensorProto.FLOAT)

    rng = np.random.default_rng(seed)
    weight = rng.normal(0.0, 0.5, 3).astype(np.float32)
    bias = float(rng.normal(0.0, 0.2))
    batch = "N" if dynamic else 1
    dims_h, dims_w = ("H", "W") if dynamic else (height, width)
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["unit"]),
        helper.make_node("Mul", ["unit", "scale"], ["depth"]),
    ]
    initializers = [
        numpy_helper.from_array(weight.reshape(1, 3, 1, 1).astype(dtype), "w"),
        numpy_helper.from_array(np.array([bias], dtype=dtype), "b"),
        numpy_helper.from_array(np.array(max_depth, dtype=dtype), "scale"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_depth",
        [helper.make_tensor_value_info("input", elem, [batch, 3, dims_h, dims_w])],
        [helper.make_tensor_value_info("depth", elem, [batch, 1, dims_h, dims_w])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    spec = ModelSpec(
        height=height, width=width, min_depth=0.1, max_depth=max_depth, dynamic=dynamic, architecture="tiny",
        intrinsics=intrinsics,
    )
    if with_spec:
        for key, value in spec.to_metadata_props().items():
            model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return TinyModel(path, spec, weight, bias)


def moving_frames(count: int, width: int, height: int) -> List[np.ndarray]:
    """Frames with a gradient and a moving square; frame i also has brightness stripe i for ordering checks."""
    ys, xs = np.mgrid[0:height, 0:width]
    frames = []
    for index in range(count):
        channels = [(xs * 255 // width), (ys * 255 // height), np.full_like(xs, (index * 8) % 256)]
        frame = np.stack(channels, -1).astype(np.uint8)
        left = (index * 7) % (width - 40)
        frame[40:80, left : left + 40] = (255, 255, 255)
        frames.append(frame)
    return frames


@pytest.fixture
def tiny_model(tmp_path: Path) -> TinyModel:
    return build_tiny_onnx(tmp_path / "tiny.onnx")


@pytest.fixture
def tiny_fp16_io_model(tmp_path: Path) -> TinyModel:
    return build_tiny_onnx(tmp_path / "tiny_fp16_io.onnx", fp16_io=True, seed=2)


@pytest.fixture
def tiny_dynamic_model(tmp_path: Path) -> TinyModel:
    return build_tiny_onnx(tmp_path / "tiny_dynamic.onnx", dynamic=True, seed=1)


@pytest.fixture
def tiny_model_factory(tmp_path: Path) -> Callable[..., TinyModel]:
    def make(name: str = "m.onnx", **kwargs) -> TinyModel:
        return build_tiny_onnx(tmp_path / name, **kwargs)

    return make


@pytest.fixture
def short_video(tmp_path: Path) -> Path:
    """30 frames, 320x240, mp4v."""
    return write_video(tmp_path / "clip.mp4", moving_frames(30, 320, 240))


def read_all_frames(path: Path) -> List[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    """make_video(name, count, width, height, fps) -> path of an mp4v video of moving frames."""

    def make(name: str = "video.mp4", count: int = 30, width: int = 320, height: int = 240, fps: float = 15.0) -> Path:
        return write_video(tmp_path / name, moving_frames(count, width, height), fps)

    return make


@pytest.fixture
def read_video() -> Callable[[Path], List[np.ndarray]]:
    return read_all_frames


@pytest.fixture
def make_frames() -> Callable[..., List[np.ndarray]]:
    return moving_frames


def build_tensorrt_engine(model: TinyModel, engine_path: Path) -> Path:
    """An FP32 engine + sidecar for a tiny ONNX model, built by depth-export's own builder."""
    from edgedepth.export.trt_build import build_engine

    shapes = {}
    if model.spec.dynamic:
        size = (3, model.spec.height, model.spec.width)
        shapes = {"min_shape": (1, *size), "opt_shape": (2, *size), "max_shape": (4, *size)}
    build_engine(str(model.path), str(engine_path), precision="fp32", log=lambda message: None, **shapes)
    return engine_path


@pytest.fixture
def tensorrt_engine_factory(tmp_path: Path) -> Callable[[TinyModel], Path]:
    return lambda model: build_tensorrt_engine(model, tmp_path / (model.path.stem + ".engine"))
