"""The shared image and video readers: even sampling, folders, globs, videos, unreadable files."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgedepth.errors import SourceError
from edgedepth.media import FolderSource, GlobSource, VideoSource, evenly_spaced, open_media

from media_helpers import write_video


def _frames(count: int) -> list:
    """BGR frames whose blue channel holds index * 5, so a test can tell which frame it read."""
    return [np.dstack([np.full((32, 48), index * 5, np.uint8), np.zeros((32, 48, 2), np.uint8)])
            for index in range(count)]


def test_evenly_spaced_covers_the_whole_range_without_repeats():
    picks = evenly_spaced(1000, 10)
    assert picks == sorted(set(picks)) and len(picks) == 10
    assert picks[0] < 100 and picks[-1] >= 900  # start and end of a recording are both sampled
    assert evenly_spaced(5, 10) == [0, 1, 2, 3, 4]
    assert evenly_spaced(0, 3) == []


def test_folder_and_glob_read_the_chosen_images_and_list_unreadable_ones(tmp_path):
    (tmp_path / "sub").mkdir()
    for index, frame in enumerate(_frames(4)):
        cv2.imwrite(str(tmp_path / ("sub" if index == 3 else ".") / f"img{index}.png"), frame)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    folder = FolderSource(tmp_path)
    assert len(folder) == 5 and folder.input_order == "BGR"
    names = [name for name, _ in folder.read(range(5))]
    assert [n.rsplit("/", 1)[-1] for n in names] == ["img0.png", "img1.png", "img2.png", "img3.png"]
    assert folder.skipped == [str(tmp_path / "broken.png")]
    matched = GlobSource(str(tmp_path / "img*.png"))
    assert len(matched) == 3 and [int(image[0, 0, 0]) for _, image in matched.read([0, 2])] == [0, 10]


def test_video_frames_are_read_at_the_chosen_indices(tmp_path):
    video = VideoSource(write_video(tmp_path / "clip.avi", _frames(20)))
    assert len(video) == 20
    read = list(video.read([15, 2]))
    assert [name for name, _ in read] == ["clip.avi#frame2", "clip.avi#frame15"]
    assert [round(float(image[:, :, 0].mean()) / 5) for _, image in read] == [2, 15]


def test_open_media_tells_folders_images_and_videos_apart(tmp_path):
    cv2.imwrite(str(tmp_path / "one.png"), _frames(1)[0])
    write_video(tmp_path / "clip.avi", _frames(3))
    assert isinstance(open_media(tmp_path), FolderSource)
    assert len(open_media(tmp_path / "one.png")) == 1
    assert isinstance(open_media(tmp_path / "clip.avi"), VideoSource)
    assert open_media(tmp_path / "missing") is None and open_media(tmp_path / "config.yaml") is None


def test_a_video_opencv_cannot_open_is_a_source_error(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(SourceError, match="cannot be opened by OpenCV"):
        VideoSource(tmp_path / "broken.mp4")
