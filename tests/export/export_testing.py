"""Constants shared by the export tests (a plain module: `from conftest import` is ambiguous
when several test folders have a conftest.py)."""
from edgedepth.camera import PinholeIntrinsics
from edgedepth.spec import ModelSpec

#: The small model every export test exports: 64x96 keeps a ResNet18 export to seconds.
#: With a training camera, so every export below must carry it (rescaled at another export size).
SPEC = ModelSpec(height=64, width=96, min_depth=0.1, max_depth=10.0,
                 intrinsics=PinholeIntrinsics(77.8, 77.9, 48.3, 37.6, 96, 64))
