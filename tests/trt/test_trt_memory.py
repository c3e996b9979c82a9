"""The CUDA memory layer: library choice and its errors (everywhere); pinned/device buffers, FP16
and FP32, async copies on the stream, worker threads and reopening (on a CUDA GPU, through each
CUDA library installed: no TensorRT needed)."""
from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from edgedepth.errors import DeviceError
from edgedepth.trt import imports, memory, platform
from edgedepth.trt.memory import LIBRARY_ENV, _pinned_view, available_libraries, open_cuda_memory, requested_library

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.uint8])
def test_a_pinned_view_works_for_every_dtype_float16_included(dtype):
    """``np.ctypeslib.as_ctypes_type(float16)`` raises NotImplementedError; the byte view does not."""
    buffer = (ctypes.c_ubyte * 64)()
    view = _pinned_view(ctypes.addressof(buffer), (2, 4), dtype)
    assert view.shape == (2, 4) and view.dtype == np.dtype(dtype)
    view[:] = np.arange(8, dtype=dtype).reshape(2, 4)
    assert bytes(buffer)[: view.nbytes] == np.arange(8, dtype=dtype).tobytes()


def test_an_unknown_library_is_refused_naming_the_choices(monkeypatch):
    with pytest.raises(DeviceError, match="'numba'.*cuda-python, pycuda"):
        requested_library("numba")
    monkeypatch.setenv(LIBRARY_ENV, "cupy")
    with pytest.raises(DeviceError, match=f"'cupy' \\(from {LIBRARY_ENV}\\)"):
        open_cuda_memory()
    monkeypatch.setenv(LIBRARY_ENV, "pycuda")
    assert requested_library() == "pycuda" and requested_library("cuda-python") == "cuda-python"


def test_without_any_cuda_library_the_error_says_what_to_install(monkeypatch):
    monkeypatch.delenv(LIBRARY_ENV, raising=False)
    monkeypatch.setattr(imports, "import_cudart", lambda: None)
    monkeypatch.setattr(imports, "import_pycuda", lambda: None)
    with pytest.raises(DeviceError) as caught:
        open_cuda_memory()
    message = str(caught.value)
    assert "cuda-python: cuda-python is not installed" in message and "pycuda: pycuda is not installed" in message
    assert "tensorrt-jp5" in message and "tensorrt-cu13" in message
    with pytest.raises(DeviceError, match="cannot query CUDA device 0 .*is the NVIDIA driver loaded"):
        platform.query_gpu(0)


def test_a_failing_cuda_python_hands_over_to_pycuda(monkeypatch):
    """A cuda-python newer than the driver fails at its first call, not at import: pycuda is tried next."""
    calls = []

    def failing(device):
        calls.append("cuda-python")
        raise DeviceError("CUDA cudaStreamCreate failed: cudaErrorInsufficientDriver")

    def pycuda(device):
        calls.append("pycuda")
        return "pycuda memory"

    monkeypatch.delenv(LIBRARY_ENV, raising=False)
    monkeypatch.setitem(memory._OPENERS, "cuda-python", failing)
    monkeypatch.setitem(memory._OPENERS, "pycuda", pycuda)
    assert open_cuda_memory() == "pycuda memory" and calls == ["cuda-python", "pycuda"]


# --- on a CUDA GPU ---------------------------------------------------------------------------------------------------


def _libraries():
    return [pytest.param(name, id=name) for name in memory.LIBRARIES]


def _require(library: str) -> None:
    if library not in available_libraries():
        pytest.skip(f"{library} is not installed (optional where the other CUDA library is)")


@pytest.mark.gpu
@pytest.mark.parametrize("library", _libraries())
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_async_round_trip_through_the_gpu_keeps_every_value(library, dtype):
    _require(library)
    values = np.random.default_rng(0).normal(0, 100, (2, 3, 64, 96)).astype(dtype)
    with open_cuda_memory(library) as cuda:
        host_in, host_out = cuda.pinned(values.shape, dtype), cuda.pinned(values.shape, dtype)
        assert host_in.dtype == np.dtype(dtype) and host_in.shape == values.shape
        device = cuda.device(values.nbytes)
        host_in[...] = values
        host_out[...] = 0
        cuda.copy_to_device_async(device, host_in)
        cuda.copy_to_host_async(host_out, device)
        cuda.synchronize()
        np.testing.assert_array_equal(host_out, values)
        cuda.free_device(device)
        cuda.free_pinned(host_in)
        assert isinstance(cuda.stream_handle, int) and cuda.stream_handle != 0


@pytest.mark.gpu
@pytest.mark.parametrize("library", _libraries())
def test_memory_opened_in_one_thread_works_in_another(library):
    _require(library)
    values = np.arange(1024, dtype=np.float32)
    result, errors = {}, []
    with open_cuda_memory(library) as cuda:
        device, host = cuda.device(values.nbytes), cuda.pinned(values.shape, np.float32)

        def worker():
            try:
                host[...] = values
                cuda.copy_to_device_async(device, host)
                host[...] = 0
                cuda.copy_to_host_async(host, device)
                cuda.synchronize()
                result["copy"] = host.copy()
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    assert not errors, errors
    np.testing.assert_array_equal(result["copy"], values)


THREADS_THEN_EXIT = textwrap.dedent("""
    import sys, threading
    import numpy as np
    from edgedepth.trt.memory import open_cuda_memory

    library = sys.argv[1]
    for pipeline in range(2):  # two pipelines one after another in one process
        cuda = open_cuda_memory(library)
        device = cuda.device(4096)
        for index in range(5):  # threads that start, use the GPU and exit (idents get reused)
            def work():
                host = cuda.pinned((1024,), np.float32)
                host[...] = index
                cuda.copy_to_device_async(device, host)
                cuda.copy_to_host_async(host, device)
                cuda.synchronize()
                assert host[0] == index
                cuda.free_pinned(host)
            thread = threading.Thread(target=work)
            thread.start()
            thread.join()
        cuda.close()
    print("clean exit")
""")


@pytest.mark.gpu
@pytest.mark.parametrize("library", _libraries())
def test_threads_that_exit_and_a_second_pipeline_leave_the_process_healthy(library, tmp_path):
    """pycuda aborts a process whose exiting thread still has a context pushed; a child process
    runs the pattern and its exit status is the verdict (SIGABRT would be -6)."""
    _require(library)
    script = tmp_path / "threads.py"
    script.write_text(THREADS_THEN_EXIT)
    done = subprocess.run([sys.executable, str(script), library], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert "clean exit" in done.stdout


@pytest.mark.gpu
def test_the_gpu_query_reports_a_compute_capability_and_the_platform():
    gpu = platform.query_gpu(0)
    major, minor = (int(part) for part in gpu.compute_capability.split("."))
    assert major >= 3 and minor >= 0 and gpu.name
    assert gpu.integrated in (True, False) and gpu.machine and gpu.system


@pytest.mark.skipif("cuda-python" not in available_libraries(), reason="cuda-python is not installed here")
def test_without_a_usable_driver_cuda_python_answers_in_one_line_with_the_fix():
    """Where cuda-python imports but no (recent enough) driver answers, the real library's error
    comes back as one line naming the binding to install, not a traceback."""
    try:
        platform.query_gpu(0)
    except DeviceError as exc:
        message = str(exc)
    else:
        pytest.skip("a CUDA device answered: this machine has a usable driver")
    assert "\n" not in message and "cuda-python: cudaGetDeviceProperties" in message and "tensorrt-cu12" in message
    with pytest.raises(DeviceError, match="no CUDA library could open GPU 0 .*cuda-python: CUDA cudaSetDevice failed"):
        open_cuda_memory()
