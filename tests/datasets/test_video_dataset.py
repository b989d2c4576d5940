"""Directories of annotated untrimmed videos: save_video_dataset writes them,
read_video_dataset and read_video read them back (MSB-RNN's data, thesis chapter 5)."""

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scalekit.datasets import read_video, read_video_dataset
from scalekit.datasets.synthetic import SHOPPING_ACTIONS, make_synthetic_shopping, save_video_dataset


@pytest.fixture(scope="module")
def videos():
    return {f"v{i}": make_synthetic_shopping(num_chunks=10, seed=i) for i in range(3)}


def write(root, videos, splits=None, **kw):
    splits = {"train": ["v0", "v1"], "test": ["v2"]} if splits is None else splits
    return save_video_dataset(videos, root, SHOPPING_ACTIONS, video_files=False, frame_tensors=True, splits=splits, **kw)


def test_what_save_video_dataset_writes_reads_back(tmp_path, videos):
    paths = write(tmp_path, videos)
    assert paths["split.json"] == os.path.join(tmp_path, "split.json") and len(paths["frames"]) == 3
    gt, ids, split = read_video_dataset(tmp_path, SHOPPING_ACTIONS)
    assert split == {"train": ["v0", "v1"], "test": ["v2"]}
    assert ids == {c: i for i, c in enumerate(SHOPPING_ACTIONS)}
    for vid, v in videos.items():
        order = np.lexsort((v["ground_truth"]["segments"][:, 0], v["ground_truth"]["labels"]))
        back = np.lexsort((gt[vid]["segments"][:, 0], gt[vid]["labels"]))
        assert gt[vid]["labels"][back].tolist() == v["ground_truth"]["labels"][order].tolist()
        assert gt[vid]["segments"][back].tolist() == v["ground_truth"]["segments"][order].tolist()
        frames = read_video(tmp_path, vid)
        assert frames.dtype == torch.float32 and frames.shape == v["frames"].shape
        assert torch.equal(frames, (v["frames"] * 255).round() / 255)  # 8 bits, rounded
        assert (frames - v["frames"]).abs().max() <= 0.5 / 255 + 1e-6


def test_class_ids_given_or_sorted_and_an_unknown_name_is_an_error(tmp_path):
    only = {"a": {"ground_truth": {"labels": [4, 2], "segments": [[0, 5], [12, 17]]}}}
    save_video_dataset(only, tmp_path, SHOPPING_ACTIONS, video_files=False, splits={"train": ["a"], "test": ["a"]})
    _, ids, _ = read_video_dataset(tmp_path, SHOPPING_ACTIONS, require_videos=False)
    assert ids["inspect_shelf"] == 4 and ids["reach_to_shelf"] == 0  # an absent class keeps its id
    gt, ids, _ = read_video_dataset(tmp_path, require_videos=False)
    assert ids == {"hand_in_shelf": 0, "inspect_shelf": 1} and sorted(gt["a"]["labels"].tolist()) == [0, 1]
    with pytest.raises(ValueError, match="unknown class 'inspect_shelf'"):
        read_video_dataset(tmp_path, ["hand_in_shelf"], require_videos=False)


def test_a_bad_split_is_named(tmp_path, videos):
    write(tmp_path, videos)
    with pytest.raises(ValueError, match="needs a non-empty 'val' list, got None"):
        read_video_dataset(tmp_path, splits=("train", "val"))
    (tmp_path / "split.json").write_text(json.dumps({"train": ["v0", "x9"], "test": ["v2"]}))
    with pytest.raises(ValueError, match=r"videos \['x9'\] have no entry in annotations.json"):
        read_video_dataset(tmp_path)
    (tmp_path / "split.json").write_text(json.dumps({"train": ["v0"], "test": []}))
    with pytest.raises(ValueError, match="needs a non-empty 'test' list"):
        read_video_dataset(tmp_path)
    (tmp_path / "split.json").write_text(json.dumps({"train": ["v0"], "test": ["v2"]}))
    os.remove(tmp_path / "videos" / "v2.pt")  # a listed video without a file: found before any is read
    with pytest.raises(FileNotFoundError, match=r"no video for 'v2' in .*videos \(expected v2.pt or v2.mp4\)"):
        read_video_dataset(tmp_path)
    assert read_video_dataset(tmp_path, require_videos=False)[2]["test"] == ["v2"]
    (tmp_path / "videos" / "v2.mp4").write_bytes(b"")  # any other file of that name counts
    assert read_video_dataset(tmp_path)[2]["test"] == ["v2"]
    os.remove(tmp_path / "split.json")
    with pytest.raises(FileNotFoundError, match="split.json is missing in"):
        read_video_dataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="annotations.json is missing in"):
        read_video_dataset(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"splits name videos not in videos: \['x9'\]"):
        write(tmp_path, videos, splits={"train": ["x9"]})


def test_read_video_resizes_and_names_a_missing_video(tmp_path, videos):
    write(tmp_path, videos)
    full = read_video(tmp_path, "v1")
    small = read_video(tmp_path, "v1", size=(32, 40))
    torch.testing.assert_close(small, F.interpolate(full, size=(32, 40), mode="bilinear", align_corners=False))
    assert torch.equal(read_video(tmp_path, "v1", size=(64, 80)), full)  # its own size: untouched
    with pytest.raises(FileNotFoundError, match=r"no video for 'v7' in .*videos \(expected v7.pt or v7.mp4\)"):
        read_video(tmp_path, "v7")


def test_read_video_decodes_a_video_file_at_15_fps(tmp_path, videos):
    pytest.importorskip("av")
    save_video_dataset({"v0": videos["v0"]}, tmp_path, SHOPPING_ACTIONS, video_files=True, fps=30)
    frames = read_video(tmp_path, "v0")  # written at 30 fps: every other frame
    assert frames.shape == (30, 3, 64, 80)
    assert (frames[5] - videos["v0"]["frames"][10]).abs().mean() < 0.08
