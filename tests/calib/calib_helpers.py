"""Helpers shared by the calibration tests (frames that encode their index, videos, small configs)."""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np

HEIGHT, WIDTH = 64, 96
NUM_VAL_IMAGES = 48


def write_small_config(path: Path, cache_dir: Path, num_val: int = NUM_VAL_IMAGES) -> Path:
    """A demo-based config at 64x96 with a small synthetic dataset cached in ``cache_dir``."""
    path.write_text(
        "_base_: demo.yaml\n"
        f"data: {{height: {HEIGHT}, width: {WIDTH}, num_workers: 0, "
        f"synthetic: {{num_train: 32, num_val: {num_val}, cache_dir: '{cache_dir}'}}}}\n"
    )
    return path


def moving_frames(count: int, height: int = 72, width: int = 104) -> List[np.ndarray]:
    """BGR frames whose blue channel encodes the frame index (index * 5), so tests can tell which
    frames were sampled, over a gradient with a moving box."""
    ys, xs = np.mgrid[0:height, 0:width]
    frames = []
    for index in range(count):
        frame = np.stack([np.full_like(xs, index * 5), xs * 255 // width, ys * 255 // height], -1).astype(np.uint8)
        left = (index * 3) % (width - 16)
        frame[20:36, left:left + 16, 1:] = 255
        frames.append(frame)
    return frames


def build_small_depth_onnx(path: Path, height: int = 32, width: int = 32, seed: int = 0) -> Path:
    """A small conv depth net with the edgedepth head (conv -> sigmoid -> x max_depth), carrying a
    ModelSpec: stem conv + relu, a residual block, and the head. Enough structure for Q/DQ tests."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgedepth.spec import ModelSpec

    rng = np.random.default_rng(seed)

    def conv_weights(name: str, out_ch: int, in_ch: int) -> list:
        weight = rng.normal(0, (2.0 / (in_ch * 9)) ** 0.5, (out_ch, in_ch, 3, 3)).astype(np.float32)
        return [numpy_helper.from_array(weight, f"{name}.weight"),
                numpy_helper.from_array(rng.normal(0, 0.1, out_ch).astype(np.float32), f"{name}.bias")]

    def conv(name: str, source: str, target: str) -> onnx.NodeProto:
        return helper.make_node("Conv", [source, f"{name}.weight", f"{name}.bias"], [target], name=f"/{name}/Conv",
                                pads=[1, 1, 1, 1])

    nodes = [
        conv("stem", "input", "stem_out"),
        helper.make_node("Relu", ["stem_out"], ["stem_act"], name="/stem/Relu"),
        conv("block/conv1", "stem_act", "b1"),
        helper.make_node("Relu", ["b1"], ["b1_act"], name="/block/Relu"),
        conv("block/conv2", "b1_act", "b2"),
        helper.make_node("Add", ["b2", "stem_act"], ["block_out"], name="/block/Add"),
        conv("head/conv", "block_out", "logits"),
        helper.make_node("Sigmoid", ["logits"], ["unit"], name="/head/sigmoid/Sigmoid"),
        helper.make_node("Mul", ["unit", "max_depth"], ["depth"], name="/head/Mul"),
    ]
    inits = (conv_weights("stem", 8, 3) + conv_weights("block/conv1", 8, 8) + conv_weights("block/conv2", 8, 8)
             + conv_weights("head/conv", 1, 8) + [numpy_helper.from_array(np.array(10.0, np.float32), "max_depth")])
    graph = helper.make_graph(
        nodes, "small_depth",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 1, height, width])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    spec = ModelSpec(height=height, width=width, architecture="small-test-net")
    for key, value in spec.to_metadata_props().items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
