"""The procedural RGB-D dataset: exact depth, monocular cues, determinism, splits, cache."""
from __future__ import annotations

import logging
import math
import pickle

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs torch (the train extra): SyntheticScenes is a torch Dataset")

from edgedepth.errors import DataError
from edgedepth.training.config import DataConfig, SyntheticConfig
from edgedepth.training.data import random_scenes, synthetic
from edgedepth.training.data.random_scenes import CameraRig
from edgedepth.training.data.render import GENERATOR_VERSION, render_scene
from edgedepth.training.data.scene import Box, Camera, Cylinder, Light, Material, Room, Scene, Sphere
from edgedepth.training.data.synthetic import SyntheticScenes
from edgedepth.training.data.textures import TEXTURE_KINDS, texture_albedo

WHITE = Material("plain", (0.8, 0.8, 0.8))


def empty_room(size=(12.0, 10.0, 8.0), material=WHITE) -> Room:
    return Room(size, material, material, (material,) * 4)


def wall_scene(objects=(), light=None, **camera) -> Scene:
    """Camera at (6, 5, 5) in a 12 x 10 x 8 room: looking along +z it sees only the wall z=8, 3 m away."""
    light = light or Light((6.0, 9.0, 5.0), ambient=0.2)
    return Scene(Camera((6.0, 5.0, 5.0), **camera), empty_room(), light, objects)


def test_render_is_deterministic_per_seed():
    first, again, other = (render_scene(seed, 48, 64) for seed in (3, 3, 4))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0]) and not np.array_equal(first[1], other[1])


def test_sample_follows_the_dataset_contract():
    data = SyntheticScenes("train", 48, 64, 3)
    sample = data[1]
    assert len(data) == 3 and sample["name"] == "synthetic/train/000001"
    assert sample["rgb"].dtype == np.uint8 and sample["rgb"].shape == (48, 64, 3)
    assert sample["depth"].dtype == np.float32 and sample["depth"].shape == (48, 64)
    assert sample["mask"].dtype == bool and sample["mask"].shape == (48, 64)
    np.testing.assert_array_equal(data[-2]["depth"], sample["depth"])
    with pytest.raises(IndexError):
        data[3]


def test_splits_never_share_a_scene():
    splits = {name: SyntheticScenes(name, 32, 40, 3) for name in ("train", "val", "test")}
    depths = {name: [data[i]["depth"] for i in range(3)] for name, data in splits.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        for i in range(3):
            for j in range(3):
                assert not np.array_equal(depths[a][i], depths[b][j])


def test_depth_is_in_range_and_mostly_valid():
    for seed in range(12):
        _, depth, mask = render_scene(seed, 48, 64, min_depth=0.1, max_depth=10.0)
        assert mask.mean() > 0.95, f"seed {seed}: only {mask.mean():.1%} valid"
        assert depth[mask].min() >= 0.1 and depth[mask].max() <= 10.0
        assert np.all(depth[~mask] == 0) and np.all(np.isfinite(depth))


def test_depth_beyond_max_depth_is_marked_invalid():
    _, depth, mask = render_scene(wall_scene(), 24, 32, max_depth=2.5)
    assert not mask.any() and not depth.any()


@pytest.mark.parametrize("yaw", [0.0, math.pi / 2, math.pi, -math.pi / 2])
def test_flat_wall_facing_the_camera_has_one_exact_depth(yaw):
    # A cube room seen from its centre: whichever wall the camera faces is 6 m away everywhere.
    # Ray length would grow towards the corners; sensor depth (camera z) must not.
    scene = Scene(Camera((6.0, 5.0, 6.0), yaw=yaw), empty_room((12.0, 10.0, 12.0)), Light((6.0, 9.0, 6.0)))
    _, depth, mask = render_scene(scene, 48, 64)
    assert mask.all()
    np.testing.assert_allclose(depth, 6.0, rtol=1e-6)


def test_tilted_camera_depth_matches_the_plane_equation():
    scene = wall_scene(pitch=0.2, roll=0.1)
    _, depth, _ = render_scene(scene, 48, 64)
    fx, fy, cx, cy = scene.camera.scaled_intrinsics(48, 64)
    v, u = np.mgrid[0:48, 0:64]
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u, dtype=float)], axis=-1)
    wall_normal_in_camera = scene.camera.rotation().T @ np.array([0.0, 0.0, 1.0])
    # A point z * (x, y, 1) lies on the wall 3 m ahead when z * (ray . n) = 3.
    np.testing.assert_allclose(depth, 3.0 / (rays @ wall_normal_in_camera), rtol=1e-5)


def test_floor_depth_increases_towards_the_horizon():
    scene = Scene(Camera((7.0, 1.5, 1.0), pitch=-0.6), empty_room((14.0, 4.0, 14.0)), Light((7.0, 3.5, 5.0)))
    _, depth, mask = render_scene(scene, 48, 64)
    assert mask.all()
    assert np.all(np.diff(depth, axis=0) < 0), "every column must get nearer row by row towards the bottom"


@pytest.mark.parametrize("obj, nearest", [
    (Sphere((6.0, 5.0, 6.5), 0.5, WHITE), 1.0),
    (Box((6.0, 5.0, 6.5), (0.3, 0.3, 0.3), material=WHITE), 1.2),
    (Cylinder((6.0, 5.0, 6.5), 0.4, 0.5, material=WHITE), 1.1),
])
def test_object_in_front_occludes_the_wall(obj, nearest):
    _, depth, mask = render_scene(wall_scene([obj]), 96, 128)
    silhouette = mask & (depth < 2.99)
    assert mask.mean() > 0.99 and 50 < silhouette.sum() < depth.size / 2
    assert silhouette[48, 64], "the object straight ahead must cover the image centre"
    assert depth[silhouette].min() == pytest.approx(nearest, abs=2e-3)
    np.testing.assert_allclose(depth[mask & ~silhouette], 3.0, rtol=1e-6)


def test_surface_facing_the_light_is_brighter():
    # World +x is image left at yaw 0: the light sits left of the sphere.
    light = Light((8.0, 5.0, 6.5), ambient=0.1, shadows=False)
    rgb, depth, _ = render_scene(wall_scene([Sphere((6.0, 5.0, 6.5), 0.5, WHITE)], light=light), 96, 128)
    luma = rgb.mean(axis=2)
    silhouette = depth < 2.9
    columns = np.nonzero(silhouette.any(axis=0))[0]
    middle = (columns.min() + columns.max()) // 2
    left, right = luma[:, :middle][silhouette[:, :middle]], luma[:, middle + 1:][silhouette[:, middle + 1:]]
    assert left.mean() > right.mean() + 20 and left.max() > right.max() + 60


def test_object_casts_a_shadow_on_the_wall():
    # Light at x=8 behind the sphere at x=7: the shadow centre lands on the wall at x=5.5.
    sphere = Sphere((7.0, 5.0, 6.8), 0.3, WHITE)
    lit, shadowed = (render_scene(wall_scene([sphere], light=Light((8.0, 5.0, 6.0), ambient=0.1, shadows=flag)),
                                  96, 128)[0] for flag in (False, True))
    camera = Camera((6.0, 5.0, 5.0))
    fx, fy, cx, cy = camera.scaled_intrinsics(96, 128)
    u, v = int(round(cx + fx * 0.5 / 3.0)), int(round(cy))  # world x 5.5 is 0.5 m to the camera's right
    assert shadowed[v, u].mean() < 0.6 * lit[v, u].mean()
    np.testing.assert_array_equal(shadowed[:10, :10], lit[:10, :10])


@pytest.mark.parametrize("kind", TEXTURE_KINDS)
def test_texture_detail_fades_where_a_pixel_covers_it(kind):
    material = Material(kind, (0.9, 0.2, 0.1), (0.1, 0.3, 0.8), scale=0.2, grain=0.2, seed=5)
    uv = np.random.default_rng(0).uniform(-3.0, 3.0, (2000, 2))
    sharp = texture_albedo(material, uv, np.full(2000, 0.001))
    blurred = texture_albedo(material, uv, np.full(2000, 5.0))
    assert sharp.shape == (2000, 3) and sharp.min() >= 0 and sharp.max() <= 1
    assert blurred.std(axis=0).max() < 1e-6, "a pattern far finer than a pixel must fade to its mean"
    assert sharp.std(axis=0).max() > 0.02


def test_unknown_texture_kind_is_refused():
    with pytest.raises(DataError, match="texture kind"):
        texture_albedo(Material("velvet"), np.zeros((1, 2)), np.ones(1))


def test_cache_is_reused_and_identical(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger=synthetic.__name__)
    first = SyntheticScenes("val", 32, 40, 4, seed=7, cache_dir=str(tmp_path))
    assert first.cache_path.is_file() and str(tmp_path) in caplog.text

    def render_refused(*args, **kwargs):
        raise AssertionError("a cached split must not be rendered again")

    monkeypatch.setattr(synthetic, "render_scene", render_refused)
    second = SyntheticScenes("val", 32, 40, 4, seed=7, cache_dir=str(tmp_path))
    assert "loaded from cache" in caplog.text
    for i in range(4):
        for key in ("rgb", "depth", "mask"):
            np.testing.assert_array_equal(first[i][key], second[i][key])


def test_cache_key_names_every_setting(tmp_path):
    base = dict(split="train", height=32, width=40, num_samples=2, seed=0, cache_dir=str(tmp_path))
    variants = [dict(), dict(seed=1), dict(num_samples=3), dict(height=24), dict(split="val"), dict(max_depth=8.0),
                dict(rig=CameraRig(height=(1.3, 1.3))), dict(rig=CameraRig(pitch_deg=(-5.0, -5.0)))]
    names = {SyntheticScenes(**{**base, **change}).cache_name() for change in variants}
    assert len(names) == len(variants)
    assert f"v{GENERATOR_VERSION}" in names.pop()


def test_corrupt_cache_is_rendered_again(tmp_path, caplog):
    reference = SyntheticScenes("train", 32, 40, 2)
    path = tmp_path / reference.cache_name()
    path.write_bytes(b"not an npy file")
    data = SyntheticScenes("train", 32, 40, 2, cache_dir=str(tmp_path))
    assert "unreadable" in caplog.text
    np.testing.assert_array_equal(data[1]["rgb"], reference[1]["rgb"])


def test_cached_dataset_pickles_without_its_samples(tmp_path):
    data = SyntheticScenes("train", 64, 80, 8, cache_dir=str(tmp_path))
    payload = pickle.dumps(data)
    assert len(payload) < 64 * 80 * 8, "DataLoader workers should reopen the memory map, not copy it"
    np.testing.assert_array_equal(pickle.loads(payload)[5]["depth"], data[5]["depth"])


def test_worker_pool_renders_the_same_samples():
    count = synthetic.MIN_SAMPLES_FOR_POOL
    pooled = SyntheticScenes("val", 16, 20, count, workers=2)
    serial = SyntheticScenes("val", 16, 20, count, workers=1)
    for i in (0, count // 2, count - 1):
        np.testing.assert_array_equal(pooled[i]["rgb"], serial[i]["rgb"])
        np.testing.assert_array_equal(pooled[i]["depth"], serial[i]["depth"])


def test_from_config_reads_size_counts_and_depth_range(tmp_path):
    cfg = DataConfig(height=32, width=40, max_depth=8.0,
                     synthetic=SyntheticConfig(num_train=3, num_val=2, seed=4, cache_dir=str(tmp_path)))
    train, val = SyntheticScenes.from_config(cfg, "train"), SyntheticScenes.from_config(cfg, "val")
    assert (len(train), len(val)) == (3, 2)
    assert train[0]["depth"].shape == (32, 40) and train.max_depth == 8.0 and val.seed == 4
    assert train.cache_path.parent == tmp_path


def test_camera_rig_places_the_camera_and_a_fixed_rig_fixes_the_floor_depth_per_row():
    rig = CameraRig(height=(1.3, 1.3), pitch_deg=(-6.0, -6.0))
    data = SyntheticScenes("train", 24, 32, 4, rig=rig)
    for index in range(4):
        camera = data.scene(index).camera
        assert camera.position[1] == pytest.approx(1.3) and camera.pitch == pytest.approx(math.radians(-6.0))
    # A fixed mount fixes where the floor is in the picture: in a large empty room the bottom
    # row's floor depth is the same for every drawn camera (only roll, ~0.03 rad, varies it).
    # That is the metric cue a robot's bolted-on camera gives, and why a matching rig helps.
    rng = np.random.default_rng(3)
    bottom = []
    for _ in range(5):
        camera = random_scenes.sample_camera(rng, (20.0, 3.0, 20.0), rig)
        camera = Camera((10.0, 1.3, 10.0), yaw=camera.yaw, pitch=camera.pitch, roll=camera.roll)
        _, depth, _ = render_scene(Scene(camera, empty_room((20.0, 3.0, 20.0)), Light((10.0, 2.8, 10.0))), 48, 64)
        bottom.append(float(depth[-1, 32]))
    assert max(bottom) / min(bottom) < 1.05


def test_from_config_passes_the_camera_rig(tmp_path):
    cfg = DataConfig(height=16, width=24, synthetic=SyntheticConfig(num_train=1, num_val=1, cache_dir=str(tmp_path),
                                                                   camera_height=[1.2, 1.4], camera_pitch_deg=[-8, -2]))
    data = SyntheticScenes.from_config(cfg, "val")
    assert data.rig == CameraRig(height=(1.2, 1.4), pitch_deg=(-8.0, -2.0))
    assert "cam1.2-1.4m-8_-2deg" in data.cache_path.name


@pytest.mark.parametrize("kwargs, message", [
    (dict(height=(1.5, 1.1)), r"camera_height=\[1.5, 1.1\] is invalid: expected \[low, high\]"),
    (dict(height=(0.0, 1.0)), "0.2 <= low"),
    (dict(pitch_deg=(-90.0, 0.0)), "camera_pitch_deg"),
    (dict(pitch_deg=(1.0,)), "camera_pitch_deg"),
])
def test_bad_camera_rig_is_refused(kwargs, message):
    with pytest.raises(DataError, match=message):
        CameraRig(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(split="holdout"), "split"),
    (dict(height=0), ">= 1"),
    (dict(num_samples=0), ">= 1"),
    (dict(seed=-1), "negative"),
    (dict(min_depth=5.0, max_depth=1.0), "depth range"),
])
def test_bad_arguments_are_refused(kwargs, message):
    arguments = {**dict(split="train", height=8, width=8, num_samples=1), **kwargs}
    with pytest.raises(DataError, match=message):
        SyntheticScenes(**arguments)


def test_write_clip_gives_a_playable_pan(tmp_path):
    import cv2

    from edgedepth.training.data.clip import write_clip

    path = write_clip(tmp_path / "pan.mp4", frames=6, height=64, width=96, seed=3)
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame.astype(int))
    assert len(frames) == 6 and frames[0].shape == (64, 96, 3)
    assert abs(frames[0] - frames[1]).mean() > 5, "the camera moves between frames"
    assert [p.name for p in tmp_path.iterdir()] == ["pan.mp4"], "no staging file is left behind"
