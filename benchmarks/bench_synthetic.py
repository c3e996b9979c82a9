"""Throughput of the synthetic RGB-D generator; optionally a montage of samples to look at.

    python benchmarks/bench_synthetic.py --count 200 --height 128 --width 160 --workers 2 \
        --montage /tmp/synthetic_montage.png

Prints one JSON object: samples/s in one process and through the dataset (worker pool), the
estimated seconds for 2000 samples at the measured size, and the cache load time.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from edgedepth.colormap import colorize_depth
from edgedepth.io import atomic_path
from edgedepth.preprocess import import_cv2
from edgedepth.training.data.render import render_scene
from edgedepth.training.data.synthetic import SyntheticScenes


def single_process_timing(count: int, height: int, width: int) -> dict:
    """Wall-clock rate and CPU time per sample rendering in this process, one after the other.

    CPU time does not grow when other processes share the cores, so it gives the rate an idle
    machine would reach; the wall-clock rate is what this run saw.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    for seed in range(count):
        render_scene(seed, height, width)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"single_process_samples_per_s": round(count / wall, 1), "cpu_ms_per_sample": round(1000 * cpu / count, 1)}


def dataset_timings(count: int, height: int, width: int, workers: int) -> dict:
    """Seconds to render a split into a fresh cache, then to load it back."""
    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        SyntheticScenes("train", height, width, count, cache_dir=cache_dir, workers=workers)
        render_s = time.perf_counter() - start
        start = time.perf_counter()
        loaded = SyntheticScenes("train", height, width, count, cache_dir=cache_dir, workers=workers)
        _ = [loaded[i]["depth"].sum() for i in range(len(loaded))]
        load_s = time.perf_counter() - start
    return {"dataset_render_s": round(render_s, 2), "dataset_samples_per_s": round(count / render_s, 1),
            "cache_load_and_read_all_s": round(load_s, 3)}


def write_montage(path: str, height: int, width: int, count: int = 8, max_depth: float = 10.0) -> None:
    """``count`` validation samples as rows of RGB | colourised depth, written as a PNG."""
    cv2 = import_cv2()
    samples = SyntheticScenes("val", height, width, count)
    rows = []
    for i in range(count):
        sample = samples[i]
        bgr = cv2.cvtColor(sample["rgb"], cv2.COLOR_RGB2BGR)
        depth = colorize_depth(sample["depth"], 0.0, max_depth, invalid_mask=~sample["mask"])
        rows.append(np.concatenate([bgr, depth], axis=1))
    grid = np.concatenate([np.concatenate(rows[i::2], axis=0) for i in range(2)], axis=1)
    with atomic_path(path) as tmp:
        ok, encoded = cv2.imencode(".png", grid)
        tmp.write_bytes(encoded.tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--montage", help="also write a montage PNG of 8 samples here")
    args = parser.parse_args()
    size = f"{args.height}x{args.width}"
    result = {"size": size, "count": args.count, "workers": args.workers, "cpu_count": os.cpu_count(),
              "load_average_1min_before": round(os.getloadavg()[0], 2)}
    result.update(single_process_timing(min(args.count, 50), args.height, args.width))
    result.update(dataset_timings(args.count, args.height, args.width, args.workers))
    result["samples_per_s"] = result["dataset_samples_per_s"]
    result[f"seconds_for_2000_at_{size}_estimate"] = round(2000 / result["samples_per_s"], 1)
    idle_rate = args.workers * 1000.0 / result["cpu_ms_per_sample"]
    result[f"seconds_for_2000_at_{size}_on_{args.workers}_idle_cores_estimate"] = round(2000 / idle_rate, 1)
    if args.montage:
        write_montage(args.montage, args.height, args.width)
        result["montage"] = args.montage
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
