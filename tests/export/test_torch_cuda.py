"""PyTorch on CUDA: the reference depth-parity uses on a GPU box agrees with the CPU reference."""
from __future__ import annotations

import numpy as np
import pytest

from edgedepth.probes import probe_batches

from export_testing import SPEC


@pytest.mark.torch_cuda
def test_the_pytorch_backend_on_cuda_matches_the_cpu(checkpoint):
    from edgedepth.runtime import open_backend

    with open_backend(str(checkpoint), device="cuda") as gpu, open_backend(str(checkpoint), device="cpu") as cpu:
        assert "cuda" in gpu.detail
        for name, batch in probe_batches(SPEC, batch=2, seed=21):
            # TF32 convolutions on Ampere+ differ from the CPU by ~1e-3 relative; 1 cm at 10 m
            assert np.max(np.abs(gpu.infer(batch) - cpu.infer(batch))) <= 1e-3 * SPEC.max_depth, name
