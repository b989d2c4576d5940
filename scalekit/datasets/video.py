"""Annotated untrimmed videos in a directory (MSB-RNN's data, thesis chapter 5): the
ground truth, the split, and each video's frames.

The layout, as :func:`scalekit.datasets.synthetic.save_video_dataset` writes it::

    root/annotations.json   {video_id: {class_name: [[start_frame, end_frame], ...]}}  (inclusive)
    root/split.json         {"train": [video_id, ...], "test": [video_id, ...]}
    root/videos/<video_id>.pt    uint8 [T, 3, H, W] frames, or
    root/videos/<video_id>.mp4   (any file PyAV decodes; read at 15 fps, thesis §5.4.2)

Reads with :func:`scalekit.evaluation.read_class_segments` and
:func:`scalekit.video.read_video_frames` (imported when called).
"""

from __future__ import annotations

import glob
import json
import os

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["read_video_dataset", "read_video"]


def read_video_dataset(root, classes=None, *, splits=("train", "test"),
                       require_videos: bool = True) -> tuple[dict, dict, dict]:
    """The ground truth, class ids and split of a directory of annotated videos (layout above).

    Args:
        root: the directory.
        classes: class names in id order (or a name -> id mapping), as
            :func:`~scalekit.evaluation.read_class_segments` takes; ``None``:
            the sorted names found. A name outside ``classes`` is an error.
        splits: the parts ``split.json`` must list, each non-empty, every
            video of them with an entry in ``annotations.json``.
        require_videos: every video of ``splits`` must have a file in
            ``videos/`` (:func:`read_video` reads it): checked here, before
            any video is read.

    Returns:
        ``(ground_truth, class_to_id, split)``: ``ground_truth[video_id]`` is
        ``{"labels": [S] int64, "segments": [S, 2] float64}`` (inclusive frame
        ranges, as annotated: evaluate with ``inclusive_end=True``), ``split``
        the parsed ``split.json``.

    Raises:
        FileNotFoundError: ``annotations.json`` or ``split.json`` is missing, or
            (with ``require_videos``) a video's file.
        ValueError: a split named in ``splits`` is absent or empty, or lists a
            video that has no annotation entry (naming a few).

    Example:
        >>> import tempfile
        >>> from scalekit.datasets import read_video_dataset
        >>> from scalekit.datasets.synthetic import SHOPPING_ACTIONS, make_synthetic_shopping, save_video_dataset
        >>> root = tempfile.mkdtemp()
        >>> videos = {v: make_synthetic_shopping(num_chunks=8, seed=s) for s, v in enumerate(["a", "b"])}
        >>> _ = save_video_dataset(videos, root, SHOPPING_ACTIONS, video_files=False, frame_tensors=True,
        ...                        splits={"train": ["a"], "test": ["b"]})
        >>> gt, ids, split = read_video_dataset(root, SHOPPING_ACTIONS)
        >>> split["test"], ids["reach_to_shelf"], sorted(gt["a"]["labels"]) == sorted(videos["a"]["ground_truth"]["labels"])
        (['b'], 0, True)
    """
    from scalekit.evaluation import read_class_segments

    paths = {name: os.path.join(str(root), name) for name in ("annotations.json", "split.json")}
    for name, path in paths.items():
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{name} is missing in {root}")
    gt, class_to_id = read_class_segments(paths["annotations.json"], classes)
    with open(paths["split.json"]) as f:
        split = json.load(f)
    if not isinstance(split, dict):
        raise ValueError(f"{paths['split.json']} must map split names to lists of video ids, got {type(split).__name__}")
    for part in splits:
        if not isinstance(split.get(part), list) or not split[part]:
            raise ValueError(f"{paths['split.json']} needs a non-empty {part!r} list, got {split.get(part)!r}")
        missing = [v for v in split[part] if v not in gt]
        if missing:
            raise ValueError(f"{paths['split.json']}: videos {missing[:3]} have no entry in annotations.json")
        if require_videos:
            for vid in split[part]:
                _video_file(root, vid)
    return gt, class_to_id, split


def _video_file(root, video_id: str) -> str:
    """``videos/<video_id>.pt`` if it exists, else the first other ``videos/<video_id>.*`` in name order."""
    folder = os.path.join(str(root), "videos")
    pt = os.path.join(folder, f"{video_id}.pt")
    if os.path.exists(pt):
        return pt
    files = sorted(p for p in glob.glob(os.path.join(glob.escape(folder), f"{glob.escape(str(video_id))}.*"))
                   if not p.endswith(".pt"))
    if not files:
        raise FileNotFoundError(f"no video for {video_id!r} in {folder} (expected {video_id}.pt or {video_id}.mp4)")
    return files[0]


def read_video(root, video_id: str, *, fps: float = 15, size: tuple[int, int] | None = None) -> Tensor:
    """One video of a directory (layout above) as ``[T, 3, H, W]`` float32 frames in ``[0, 1]``.

    ``videos/<video_id>.pt`` (uint8 ``[T, 3, H, W]``, read as is) comes first;
    otherwise the first other ``videos/<video_id>.*`` file (in name order) is
    decoded with PyAV at ``fps`` frames per second (15 in the thesis,
    §5.4.2). With ``size = (H, W)`` frames of another size are resized
    (bilinear, ``align_corners=False``).

    Raises:
        FileNotFoundError: no file for ``video_id``.

    Example:
        >>> import os, tempfile, torch
        >>> from scalekit.datasets import read_video
        >>> root = tempfile.mkdtemp(); os.makedirs(os.path.join(root, "videos"))
        >>> torch.save(torch.full((12, 3, 8, 10), 255, dtype=torch.uint8), os.path.join(root, "videos", "v1.pt"))
        >>> frames = read_video(root, "v1", size=(4, 5))
        >>> frames.shape, frames.dtype, frames.max().item()
        (torch.Size([12, 3, 4, 5]), torch.float32, 1.0)
    """
    path = _video_file(root, video_id)
    if path.endswith(".pt"):
        frames = torch.load(path, weights_only=True).float() / 255
    else:
        from scalekit.video import read_video_frames

        frames = torch.stack(list(read_video_frames(path, target_fps=fps)))
    if size is not None and tuple(frames.shape[-2:]) != tuple(size):
        frames = F.interpolate(frames, size=tuple(size), mode="bilinear", align_corners=False)
    return frames
