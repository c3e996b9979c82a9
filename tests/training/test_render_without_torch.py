"""The scene renderer is numpy only: rooms (and parity's built-in set) render where torch is missing."""
from __future__ import annotations

import subprocess
import sys

#: A fresh interpreter in which ``import torch`` fails, as on a Jetson runtime install.
BLOCK_TORCH = "import sys\nsys.modules['torch'] = None\n"


def run_without_torch(code: str) -> None:
    subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], check=True, timeout=120)


def test_renderer_renders_a_room_without_torch():
    run_without_torch(
        "from edgedepth.training.data.render import render_scene\n"
        "import edgedepth.training.data.clip\n"
        "rgb, depth, mask = render_scene(3, 24, 32)\n"
        "assert rgb.shape == (24, 32, 3) and rgb.dtype.name == 'uint8' and rgb.std() > 0\n"
        "assert depth.shape == (24, 32) and mask.any() and (depth[mask] > 0).all() and (depth[~mask] == 0).all()\n"
    )


def test_parity_builtin_rooms_render_without_torch():
    run_without_torch(
        "from edgedepth.parity.inputs import builtin_images\n"
        "rooms = [name for name in builtin_images(32, 48) if name.startswith('room_')]\n"
        "assert rooms, 'the built-in set lost its rendered rooms'\n"
    )
