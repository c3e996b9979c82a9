"""Metric depth for the user's camera (--intrinsics): the focal rescale, checked on synthetic rooms
rendered at two focal lengths; and the depth-stage hook of the pipeline it runs in."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List

import numpy as np
import pytest
from test_runtime_pipeline import JitteryBackend

from edgedepth.camera import CameraCalibration, PinholeIntrinsics
from edgedepth.errors import UsageError
from edgedepth.metrics import compute_depth_metrics
from edgedepth.preprocess import preprocess
from edgedepth.runtime import open_backend
from edgedepth.runtime.focal import DepthCamera, FocalRescale, focal_factor
from edgedepth.runtime.pipeline import DepthPipeline, Outputs, PipelineOptions
from edgedepth.runtime.sinks import DepthWriter
from edgedepth.runtime.sources import Frame, VideoFileSource
from edgedepth.spec import ModelSpec
from edgedepth.training.data.random_scenes import sample_scene
from edgedepth.training.data.render import render_scene

HEIGHT, WIDTH = 96, 128
#: Both cameras share the image centre, so the longer lens sees exactly the centre of the shorter one's view.
CENTRE = ((WIDTH - 1) / 2, (HEIGHT - 1) / 2)


def render(seed: int, focal: float):
    scene = sample_scene(seed)
    camera = dataclasses.replace(scene.camera, intrinsics=(focal, focal, *CENTRE), reference_size=(HEIGHT, WIDTH))
    return render_scene(dataclasses.replace(scene, camera=camera), HEIGHT, WIDTH)


def trained_network_answer(depth_short: np.ndarray, magnification: float) -> np.ndarray:
    """What a network trained with the short lens answers for the long lens's view of the same room.

    The long lens's image is the short lens's centre 1/m crop magnified m times; training's scale
    augmentation (training/data/augment.py) labels exactly that view with ``depth / m`` (a camera
    m times closer), so ``depth / m`` at each pixel is what the network learnt to output. The short
    lens's depth is sampled (nearest) where each long-lens pixel's ray meets it.
    """
    rows = np.rint(CENTRE[1] + (np.arange(HEIGHT) - CENTRE[1]) / magnification).astype(int)
    cols = np.rint(CENTRE[0] + (np.arange(WIDTH) - CENTRE[0]) / magnification).astype(int)
    return depth_short[np.ix_(rows, cols)] / magnification


@pytest.mark.parametrize("seed", [3, 11])
def test_the_focal_rescale_maps_a_network_trained_on_one_lens_to_the_depth_another_lens_sees(seed):
    f_train, f_user = 100.0, 160.0
    _, depth_short, valid_short = render(seed, f_train)
    image_long, depth_long, valid_long = render(seed, f_user)
    answer = trained_network_answer(np.where(valid_short, depth_short, 0.0), f_user / f_train)

    spec = ModelSpec(height=HEIGHT, width=WIDTH, intrinsics=PinholeIntrinsics(f_train, f_train, *CENTRE, WIDTH, HEIGHT))
    # The user's camera as a calibration at twice the model's resolution: depth-run scales it to the input.
    calibration = CameraCalibration(2 * f_user, 2 * f_user, (CENTRE[0] + 0.5) * 2 - 0.5, (CENTRE[1] + 0.5) * 2 - 0.5,
                                    size=(2 * WIDTH, 2 * HEIGHT), origin="test")
    stage = FocalRescale(DepthCamera(spec, calibration))
    frame = Frame(0, np.zeros((2 * HEIGHT, 2 * WIDTH, 3), np.uint8), 0.0, 0.0)
    rescaled = stage(frame, answer.astype(np.float32))
    assert stage.factor == pytest.approx(f_user / f_train, rel=1e-12)

    valid = valid_long & (answer > 0)
    assert valid.mean() > 0.8
    before = compute_depth_metrics(answer, depth_long, valid)["abs_rel"]
    after = compute_depth_metrics(rescaled, depth_long, valid)["abs_rel"]
    assert before == pytest.approx(1 - f_train / f_user, abs=0.03)  # 37.5% too near without the rescale
    assert after < 0.01  # nearest-pixel sampling at object edges is all that is left (0.3-0.4%)
    assert image_long.shape == (HEIGHT, WIDTH, 3)


def test_focal_factor_uses_the_geometric_mean_at_the_same_image_size():
    train = PinholeIntrinsics(100.0, 100.0, 63.5, 47.5, 128, 96)
    user = PinholeIntrinsics(400.0, 225.0, 127.5, 95.5, 256, 192)  # a stretched mode: fx, fy differ
    assert focal_factor(user, train) == pytest.approx(np.sqrt(400 * 225) / 200.0)


def test_rescaling_needs_a_training_camera():
    with pytest.raises(UsageError, match="does not record one"):
        FocalRescale(DepthCamera(ModelSpec(height=64, width=96),
                                 CameraCalibration(1.0, 1.0, 1.0, 1.0, size=None, origin="x")))


class Doubling:
    """A depth stage that records the order it saw frames in."""

    name = "doubling"

    def __init__(self) -> None:
        self.seen: List[int] = []

    def __call__(self, frame: Frame, depth: np.ndarray) -> np.ndarray:
        self.seen.append(frame.index)
        return depth * 2

    def summary(self) -> Dict[str, Any]:
        return {"frames": len(self.seen)}


def test_depth_stages_run_in_stream_order_before_every_sink(tiny_model, make_video, tmp_path):
    stage, received = Doubling(), []
    with open_backend(str(tiny_model.path)) as real, VideoFileSource(str(make_video(count=9))) as source:
        outputs = Outputs(depth=DepthWriter(str(tmp_path / "d"), "npy"),
                          on_depth=lambda frame, depth: received.append((frame, depth)))
        result = DepthPipeline(source, JitteryBackend(real, 0.01), outputs,
                               PipelineOptions(warmup_iterations=0, streams=3), [stage]).run()
    assert stage.seen == list(range(9)) and result.to_dict()["doubling"] == {"frames": 9}
    for frame, depth in received:
        reference = tiny_model.reference(preprocess(frame.image, tiny_model.spec))[0, 0]
        np.testing.assert_allclose(depth, 2 * reference, rtol=1e-5)
        np.testing.assert_allclose(np.load(tmp_path / "d" / f"{frame.name}.npy"), 2 * reference, rtol=1e-5)


def test_a_stage_may_not_take_a_name_of_the_stats(tiny_model, make_video):
    stage = Doubling()
    stage.name = "fps"
    with open_backend(str(tiny_model.path)) as real, VideoFileSource(str(make_video(count=2))) as source:
        with pytest.raises(UsageError, match="'fps' is taken"):
            DepthPipeline(source, real, Outputs(), stages=[stage])
