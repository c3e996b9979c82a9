"""Fixtures for the export tests: one small checkpoint and its exports, built once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgedepth.spec import ModelSpec

from export_testing import SPEC


def _spread_depth_model(spec: ModelSpec):
    """A ResNet18 DepthNet that behaves like a trained one where export cares: BatchNorm
    statistics from image-like inputs, and head logits within about +-4.6 on every probe, so
    depth spreads over (min_depth, max_depth) as a trained model's does. (A random-init model
    sits at sigmoid(0) everywhere, which would make the FP16 check too easy; a real training run
    takes minutes on this CPU.)"""
    import torch

    from edgedepth.probes import probe_dict
    from edgedepth.training.model import create_model

    torch.manual_seed(0)
    model = create_model(spec)
    batches = [torch.from_numpy(b) for b in probe_dict(spec, batch=2, seed=11).values()]
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for batch in batches:
            model(batch)
        model.eval()
        logits = torch.cat([model.head.conv(model.decoder(model.encoder(b))).flatten() for b in batches])
        model.head.conv.bias.sub_(logits.mean())
        model.head.conv.weight.mul_(4.6 / (logits - logits.mean()).abs().max())
        model.head.conv.bias.mul_(4.6 / (logits - logits.mean()).abs().max())
    return model


@pytest.fixture(scope="session", autouse=True)
def single_torch_thread():
    """PyTorch reference runs on one thread: on a busy 2-core machine its OpenMP threads spin
    against each other (a 64x96 forward pass then takes seconds instead of milliseconds)."""
    try:
        import torch
    except ImportError:  # the TensorRT-free logic tests run without torch
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    for module in ("torch", "onnx", "onnxruntime"):
        pytest.importorskip(module)
    from edgedepth.training.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "depth.pt"
    model = _spread_depth_model(SPEC)
    save_checkpoint(path, model, SPEC, config={"note": "export test"})
    return path


@pytest.fixture(scope="session")
def torch_model(checkpoint):
    from edgedepth.training.checkpoint import load_checkpoint

    model, _ = load_checkpoint(checkpoint)
    return model


@pytest.fixture(scope="session")
def static_onnx(checkpoint, tmp_path_factory) -> Path:
    from edgedepth.export.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("static") / "model.onnx"
    export_onnx(checkpoint, path, log=lambda _: None)
    return path


@pytest.fixture(scope="session")
def dynamic_onnx(checkpoint, tmp_path_factory) -> Path:
    from edgedepth.export.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("dynamic") / "model.onnx"
    export_onnx(checkpoint, path, dynamic=True, log=lambda _: None)
    return path


@pytest.fixture(scope="session", params=["modelopt.onnx.autocast", "onnxconverter_common.float16"])
def fp16_onnx(request, static_onnx, tmp_path_factory) -> Path:
    """The FP16 graph from each converter that is installed (the tests hold for both)."""
    from edgedepth.export.fp16 import convert_to_fp16
    from edgedepth.export.fp16_converters import converter_available

    if not converter_available(request.param):
        pytest.skip(f"{request.param} is not installed")
    path = tmp_path_factory.mktemp("fp16") / "model.fp16.onnx"
    convert_to_fp16(static_onnx, path, converter=request.param, log=lambda _: None)
    return path
