"""A seeded synthetic untrimmed video: a textured disc performing scripted
fine-grained actions with known intervals, still in between."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["make_synthetic_video", "SYNTHETIC_ACTIONS", "make_synthetic_shopping", "SHOPPING_ACTIONS", "save_video_dataset"]

SYNTHETIC_ACTIONS = ("move_left", "move_right", "move_up", "move_down")
_DIRECTIONS = {0: (-1, 0), 1: (1, 0), 2: (0, -1), 3: (0, 1)}


def make_synthetic_video(num_chunks: int = 40, chunk_len: int = 6, size=(72, 96), seed: int = 0,
                         speed: float = 1.5, radius: int = 8) -> dict:
    """An untrimmed video whose actions start and end on chunk boundaries.

    Segments alternate: background (the disc is still, 1-4 chunks) and an
    action (2-5 chunks) of a random class from :data:`SYNTHETIC_ACTIONS`,
    during which the disc moves ``speed`` px per frame in its direction
    (bouncing off the borders).

    Returns:
        A dict with ``"frames"`` (``[T, 3, H, W]`` float in ``[0, 1]``),
        ``"chunk_labels"`` (``[num_chunks]``: 0 background, ``c + 1`` for
        action ``c``), ``"ground_truth"`` (``{"labels", "segments"}`` with
        inclusive frame ranges, as MPII/MERL) and ``"centres"`` (``[T, 2]``,
        the disc's ``(x, y)``).

    Example:
        >>> from scalekit.datasets.synthetic import make_synthetic_video
        >>> v = make_synthetic_video(num_chunks=10, seed=1)
        >>> v["frames"].shape, v["chunk_labels"].shape
        (torch.Size([60, 3, 72, 96]), torch.Size([10]))
    """
    rng = np.random.default_rng(seed)
    h, w = size
    chunk_labels = []
    while len(chunk_labels) < num_chunks:
        chunk_labels += [0] * int(rng.integers(1, 5))
        chunk_labels += [int(rng.integers(len(SYNTHETIC_ACTIONS))) + 1] * int(rng.integers(2, 6))
    chunk_labels = chunk_labels[:num_chunks]
    background = rng.uniform(0.2, 0.5, (3, h // 4 + 1, w // 4 + 1)).repeat(4, 1).repeat(4, 2)[:, :h, :w]
    texture = rng.uniform(0.6, 1.0, (3, 2 * radius + 1, 2 * radius + 1))
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disc = xx**2 + yy**2 <= radius**2
    x, y = w / 2, h / 2
    frames, centres = [], []
    for t in range(num_chunks * chunk_len):
        label = chunk_labels[t // chunk_len]
        if label:
            dx, dy = _DIRECTIONS[label - 1]
            x = float(np.clip(x + dx * speed, radius, w - radius - 1))
            y = float(np.clip(y + dy * speed, radius, h - radius - 1))
        frame = background.copy()
        cx, cy = int(round(x)), int(round(y))
        patch = frame[:, cy - radius : cy + radius + 1, cx - radius : cx + radius + 1]
        patch[:, disc] = texture[:, disc]
        frames.append(frame)
        centres.append((x, y))
    labels, segments = [], []
    start = None
    for i, label in enumerate(chunk_labels + [0]):
        if start is not None and (label != chunk_labels[start] or i == num_chunks):
            labels.append(chunk_labels[start] - 1)
            segments.append([start * chunk_len, i * chunk_len - 1])
            start = None
        if label and start is None and i < num_chunks:
            start = i
    return {
        "frames": torch.tensor(np.stack(frames), dtype=torch.float32),
        "chunk_labels": torch.tensor(chunk_labels),
        "ground_truth": {"labels": np.asarray(labels, dtype=np.int64),
                         "segments": np.asarray(segments, dtype=np.float64).reshape(-1, 2)},
        "centres": torch.tensor(centres),
    }


SHOPPING_ACTIONS = ("reach_to_shelf", "retract_from_shelf", "hand_in_shelf", "inspect_product", "inspect_shelf")
"""The five action classes of the thesis' Shopping dataset (§5.4.1), as :func:`make_synthetic_shopping` draws them."""

_SHOPPING_DURATIONS = {0: (1, 1), 1: (1, 1), 2: (1, 4), 3: (2, 5), 4: (2, 5)}  # chunks, inclusive ranges


def _shopping_script(rng, num_chunks: int) -> list[int]:
    """Chunk labels from the grammar: background, then reach -> hand in shelf -> retract
    (-> inspect product) or inspect shelf alone, a background gap or none in between."""
    labels: list[int] = []
    while len(labels) < num_chunks:
        labels += [0] * int(rng.integers(1, 4))
        episode = [0, 2, 1] + ([3] if rng.random() < 0.5 else []) if rng.random() < 0.7 else [4]
        for i, action in enumerate(episode):
            if i and rng.random() < 0.25:
                labels.append(0)
            lo, hi = _SHOPPING_DURATIONS[action]
            labels += [action + 1] * int(rng.integers(lo, hi + 1))
    return labels[:num_chunks]


def _paint(frame: np.ndarray, cx: float, cy: float, radius: int, texture: np.ndarray) -> None:
    """Paint a textured disc centred at (cx, cy), clipped to the frame."""
    h, w = frame.shape[1:]
    x0, y0 = int(round(cx)) - radius, int(round(cy)) - radius
    yy, xx = np.mgrid[0 : 2 * radius + 1, 0 : 2 * radius + 1]
    inside = (xx - radius) ** 2 + (yy - radius) ** 2 <= radius**2
    ys, xs = yy[inside] + y0, xx[inside] + x0
    ok = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    frame[:, ys[ok], xs[ok]] = texture[:, yy[inside][ok], xx[inside][ok]]


def _hand_offset(label: int, tau: int, seg_len: int, u: np.ndarray, reach: float, radius: float,
                 period: int) -> np.ndarray:
    """The hand's displacement from its rest position, ``tau`` frames into a segment of ``seg_len``."""
    v = np.array([-u[1], u[0]])
    if label == 1:  # reach: rest -> extended
        return u * reach * (tau + 1) / seg_len
    if label == 2:  # retract: extended -> rest (reach played backwards)
        return u * reach * (seg_len - tau - 1) / seg_len
    if label == 3:  # hand in shelf: extended, sliding along the shelf
        return u * reach + v * radius * np.sin(2 * np.pi * tau / period)
    if label in (4, 5):  # inspect product / shelf: circles, clockwise / counter-clockwise
        sign = 1.0 if label == 4 else -1.0
        phase = 2 * np.pi * tau / period
        return u * reach / 2 + radius * (u * (np.cos(phase) - 1) + sign * v * np.sin(phase))
    return np.zeros(2)


def make_synthetic_shopping(num_chunks: int = 40, chunk_len: int = 6, size=(64, 80), seed: int = 0, *,
                            num_distractors: int = 3, body_radius: int = 6, hand_radius: int = 3,
                            reach: float = 9.0, motion_radius: float = 3.0, period: int = 12,
                            walk_speed: float = 2.0, distractor_speed: float = 0.5, subject: int | None = None) -> dict:
    """A seeded untrimmed overhead video in the spirit of the Shopping dataset (thesis §5.4.1).

    One actor (a textured disc with a smaller "hand" disc) walks along an
    aisle between two shelves and, standing at a shelf, performs the five
    :data:`SHOPPING_ACTIONS`. Each part of MSB-RNN has a reason to help:

    * the classes differ only in the motion of the small hand beside the actor
      (reach / retract move it out / back: one is the other played backwards;
      hand in shelf slides it along the shelf; inspect product / shelf circle
      it clockwise / counter-clockwise, over ``period`` frames): a
      person-centric crop sees it, the full frame barely does;
    * ``num_distractors`` small discs elsewhere in the aisle keep making the
      same kinds of motion (circles, slides, strokes) at random, so
      full-frame motion is noisy;
    * the circles cover several frames (a point's displacements spread over
      different pixels in stacked flow, stay at one pixel as pixel trajectories);
    * actions follow a grammar (reach, hand in shelf, retract, then inspect
      product half of the time; or inspect shelf alone; durations 1 to 5
      chunks; background — walking or standing — in between), so temporal
      context in both directions tells reach from retract.

    Actions start and end on chunk boundaries. Walking moves the actor
    ``walk_speed`` px per frame (faster than anything else: what the flow
    tracker follows).

    ``subject`` makes the actor one of a recurring cast, as the thesis' videos
    are recorded by a few subjects and split by subject: the actor's body and
    hand textures and its style (``reach`` scaled by 0.85-1.0,
    ``motion_radius`` by 0.8-1.2) are then a function of ``subject`` alone, the
    same in every video of that subject; everything else (scene, script,
    distractors) still comes from ``seed``, drawn exactly as without
    ``subject``. ``subject=None`` (default): the actor is drawn from ``seed``,
    as before the option existed (same pixels for every seed).

    Args:
        num_chunks: chunks in the video (``num_chunks * chunk_len`` frames).
        chunk_len: frames per chunk (6 in MSB-RNN, §5.3).
        size: ``(height, width)``.
        seed: the video (scene, script, distractors) is a function of it.
        num_distractors: small moving discs away from the actor.
        body_radius, hand_radius: the actor's body and hand discs, in pixels.
        reach: how far (px) reach / retract move the hand and hand in shelf holds it out.
        motion_radius: radius (px) of the circles, amplitude of the slide.
        period: frames per circle or slide (two chunks: a chunk sees half a turn).
        walk_speed: the actor's walking speed, px per frame.
        distractor_speed: the distractors' motions, scaled from the hand's (0.5: half as large).
        subject: a non-negative integer (the actor's identity, above) or ``None``.

    Returns:
        A dict with ``"frames"`` (``[T, 3, H, W]`` float32 in ``[0, 1]``),
        ``"chunk_labels"`` (``[num_chunks]`` int64: 0 background, ``c + 1`` for
        action ``c``), ``"ground_truth"`` (``{"labels", "segments"}``, inclusive
        frame ranges as MPII Cooking 2 / Shopping), ``"actor"`` and ``"hand"``
        (``[T, 2]`` float32 ``(x, y)`` centres) and ``"subject"`` (the argument).

    Example:
        >>> from scalekit.datasets.synthetic import make_synthetic_shopping, SHOPPING_ACTIONS
        >>> v = make_synthetic_shopping(num_chunks=12, seed=1)
        >>> v["frames"].shape, v["chunk_labels"].shape
        (torch.Size([72, 3, 64, 80]), torch.Size([12]))
        >>> [SHOPPING_ACTIONS[c] for c in v["ground_truth"]["labels"][:3]]
        ['inspect_shelf', 'inspect_shelf', 'reach_to_shelf']
    """
    h, w = int(size[0]), int(size[1])
    if subject is not None and (isinstance(subject, bool) or not isinstance(subject, (int, np.integer)) or subject < 0):
        raise ValueError(f"subject must be None or a non-negative integer, got {subject!r}")
    if num_chunks < 1 or chunk_len < 1:
        raise ValueError(f"num_chunks and chunk_len must be positive, got {num_chunks} and {chunk_len}")
    shelf = max(4, w // 8)
    if h < 4 * body_radius + 2 or w - 2 * shelf < 2 * (body_radius + hand_radius + reach) + 2:
        raise ValueError(f"size {tuple(size)} is too small for the actor (body_radius={body_radius}, "
                         f"hand_radius={hand_radius}, reach={reach})")
    rng = np.random.default_rng(seed)
    labels = _shopping_script(rng, num_chunks)
    # Scene: a blocky floor and two shelves of coloured products.
    noise = rng.uniform(0.15, 0.55, (3, h + 2, w + 2))  # fine texture, smoothed: flow is well posed everywhere
    frame0 = sum(noise[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9
    for x0 in (0, w - shelf):
        rows = rng.uniform(0.3, 0.9, (3, h // 3 + 1, 1)).repeat(3, 1)[:, :h]
        frame0[:, :, x0 : x0 + shelf] = rows * rng.uniform(0.7, 1.0, (3, h, shelf))
    body_tex = rng.uniform(0.1, 0.3, (3, 2 * body_radius + 1, 2 * body_radius + 1))
    body_tex[2] += 0.5
    hand_tex = rng.uniform(0.75, 1.0, (3, 2 * hand_radius + 1, 2 * hand_radius + 1))
    hand_tex[2] *= 0.6
    hand_reach, hand_motion = reach, motion_radius  # the actor's; the distractors keep reach and motion_radius
    if subject is not None:  # the actor from its own stream: seed's draws above stay as they were
        actor_rng = np.random.default_rng((int(subject), 0x5EB1))
        body_tex = actor_rng.uniform(0.1, 0.3, body_tex.shape)
        body_tex[int(actor_rng.integers(3))] += 0.5
        hand_tex = actor_rng.uniform(0.75, 1.0, hand_tex.shape) * actor_rng.uniform(0.6, 1.0, (3, 1, 1))
        hand_reach, hand_motion = reach * actor_rng.uniform(0.85, 1.0), motion_radius * actor_rng.uniform(0.8, 1.2)
    # Stops beside a shelf: the actor's centre, and the unit vector to the shelf.
    near = shelf + body_radius + hand_radius + 1
    x_stop = {-1: float(near), 1: float(w - 1 - near)}
    y_lo, y_hi = body_radius + 1, h - body_radius - 2

    def new_stop():
        side = int(rng.choice([-1, 1]))
        return np.array([x_stop[side], rng.uniform(y_lo, y_hi)]), np.array([float(side), 0.0])

    pos, u = new_stop()
    target, target_u = pos.copy(), u
    dist_tex = [rng.uniform(0.75, 1.0, (3, 5, 5)) * np.array([1, 1, 0.6])[:, None, None] for _ in range(num_distractors)]
    dist_anchor = [np.array([rng.uniform(w * 0.3, w * 0.7), rng.uniform(4, h - 5)]) for _ in range(num_distractors)]
    dist_motion = [int(rng.integers(0, 5)) for _ in range(num_distractors)]
    dist_dir = [np.array([np.cos(a), np.sin(a)]) for a in rng.uniform(0, 2 * np.pi, num_distractors)]
    frames, actor, hand = [], [], []
    segment_start = 0
    for i, label in enumerate(labels):
        if i == 0 or label != labels[i - 1]:
            segment_start = i
            seg_end = i
            while seg_end + 1 < num_chunks and labels[seg_end + 1] == label:
                seg_end += 1
            if label == 0 and (i == 0 or rng.random() < 0.7):  # background: walk to the next stop
                target, target_u = new_stop()
            elif label:
                target, target_u = pos.copy(), u
        if label == 0 and np.linalg.norm(target - pos) > 0:
            u = target_u
        for d in range(num_distractors):
            if rng.random() < 0.3:
                dist_motion[d] = int(rng.integers(0, 5))
        for f in range(chunk_len):
            t = i * chunk_len + f
            if label == 0:
                step = target - pos
                n = np.linalg.norm(step)
                pos = target.copy() if n <= walk_speed else pos + step / n * walk_speed
            tau = (i - segment_start) * chunk_len + f
            seg_len = (seg_end - segment_start + 1) * chunk_len
            rest = pos + u * (body_radius + hand_radius)
            hand_xy = rest + _hand_offset(label, tau, seg_len, u, hand_reach, hand_motion, period)
            frame = frame0.copy()
            for d in range(num_distractors):
                dist_anchor[d] = dist_anchor[d] + dist_dir[d] * 0.25
                if not (shelf + 3 < dist_anchor[d][0] < w - shelf - 4 and 3 < dist_anchor[d][1] < h - 4):
                    dist_dir[d] = -dist_dir[d]
                off = _hand_offset(dist_motion[d] + 1, t % chunk_len if dist_motion[d] < 2 else t, chunk_len, dist_dir[d], reach * distractor_speed,
                                   motion_radius * distractor_speed, period)
                _paint(frame, *(dist_anchor[d] + off - dist_dir[d] * reach * distractor_speed / 2), 2, dist_tex[d])
            _paint(frame, *pos, body_radius, body_tex)
            _paint(frame, *hand_xy, hand_radius, hand_tex)
            frames.append(frame)
            actor.append(pos.copy())
            hand.append(hand_xy)
    gt_labels, segments = [], []
    for i, label in enumerate(labels):
        if label and (i == 0 or labels[i - 1] != label):
            end = i
            while end + 1 < num_chunks and labels[end + 1] == label:
                end += 1
            gt_labels.append(label - 1)
            segments.append([i * chunk_len, (end + 1) * chunk_len - 1])
    return {
        "frames": torch.tensor(np.clip(np.stack(frames), 0, 1), dtype=torch.float32),
        "chunk_labels": torch.tensor(labels, dtype=torch.int64),
        "ground_truth": {"labels": np.asarray(gt_labels, dtype=np.int64),
                         "segments": np.asarray(segments, dtype=np.float64).reshape(-1, 2)},
        "actor": torch.tensor(np.stack(actor), dtype=torch.float32),
        "hand": torch.tensor(np.stack(hand), dtype=torch.float32),
        "subject": subject,
    }


def save_video_dataset(videos, directory, classes, *, video_files: bool | None = None, fps: int = 15,
                       frame_tensors: bool = False, splits: dict | None = None) -> dict:
    """Write annotated videos in the formats the evaluation and dataset readers take.

    Writes ``annotations.json`` (``{video_id: {class_name: [[start, end], ...]}}``,
    for :func:`~scalekit.evaluation.read_class_segments`), ``annotations.csv``
    (``video,start_frame,end_frame,class``, for
    :func:`~scalekit.evaluation.read_segments_csv`) and, with PyAV, one
    ``videos/<video_id>.mp4`` per video (H.264 at ``fps``, 15 in the thesis §5.4.2).
    With ``frame_tensors`` and ``splits`` it is the layout
    :func:`scalekit.datasets.read_video_dataset` and :func:`scalekit.datasets.read_video` read.

    Args:
        videos: ``{video_id: video}``, each a dict as :func:`make_synthetic_shopping`
            returns (``"ground_truth"``; ``"frames"`` for video files).
        directory: created if missing.
        classes: class names, indexed by the ground truth's labels.
        video_files: write MP4 files: ``True`` (PyAV required), ``False``, or
            ``None`` (when PyAV is installed).
        frame_tensors: also write ``videos/<video_id>.pt``, the frames as uint8
            ``[T, 3, H, W]`` (``round(frames * 255)``: lossless at 8 bits, no PyAV needed).
        splits: ``{split_name: [video_id, ...]}`` written as ``split.json``.

    Returns:
        ``{"annotations.json": path, "annotations.csv": path, "videos": [mp4 paths]}``,
        plus ``"frames"`` (``.pt`` paths) with ``frame_tensors`` and ``"split.json"`` with ``splits``.

    Example:
        >>> import tempfile
        >>> from scalekit.datasets.synthetic import SHOPPING_ACTIONS, make_synthetic_shopping, save_video_dataset
        >>> from scalekit.evaluation import read_class_segments
        >>> d = tempfile.mkdtemp()
        >>> v = make_synthetic_shopping(num_chunks=8, seed=1)
        >>> paths = save_video_dataset({"v1": v}, d, SHOPPING_ACTIONS, video_files=False)
        >>> gt, ids = read_class_segments(paths["annotations.json"], classes=SHOPPING_ACTIONS)
        >>> gt["v1"]["segments"].tolist() == v["ground_truth"]["segments"].tolist()
        True
    """
    import csv
    import json
    import os

    classes = list(classes)
    if video_files is None:
        try:
            import av  # noqa: F401
            video_files = True
        except ImportError:
            video_files = False
    os.makedirs(directory, exist_ok=True)
    per_video, rows = {}, []
    for vid, video in videos.items():
        if "ground_truth" not in video:
            raise ValueError(f"videos[{vid!r}] lacks 'ground_truth'")
        gt = video["ground_truth"]
        entry: dict = {}
        for label, (start, end) in zip(np.asarray(gt["labels"]).tolist(), np.asarray(gt["segments"]).tolist()):
            if not 0 <= label < len(classes):
                raise ValueError(f"videos[{vid!r}]: label {label} outside classes (0..{len(classes) - 1})")
            entry.setdefault(classes[label], []).append([int(start), int(end)])
            rows.append((vid, int(start), int(end), classes[label]))
        per_video[str(vid)] = entry
    out = {"annotations.json": os.path.join(directory, "annotations.json"),
           "annotations.csv": os.path.join(directory, "annotations.csv"), "videos": []}
    with open(out["annotations.json"], "w") as f:
        json.dump(per_video, f, indent=1)
    with open(out["annotations.csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "start_frame", "end_frame", "class"])
        writer.writerows(rows)
    if frame_tensors:
        os.makedirs(os.path.join(directory, "videos"), exist_ok=True)
        out["frames"] = [os.path.join(directory, "videos", f"{vid}.pt") for vid in videos]
        for path, video in zip(out["frames"], videos.values()):
            torch.save((torch.as_tensor(video["frames"]) * 255).round().to(torch.uint8), path)
    if splits is not None:
        unknown = sorted({str(v) for part in splits.values() for v in part} - set(per_video))
        if unknown:
            raise ValueError(f"splits name videos not in videos: {unknown[:3]}")
        out["split.json"] = os.path.join(directory, "split.json")
        with open(out["split.json"], "w") as f:
            json.dump({part: [str(v) for v in ids] for part, ids in splits.items()}, f)
    if video_files:
        try:
            import av
        except ImportError as exc:
            raise ImportError("video_files=True needs PyAV: pip install 'scalekit[video]' (av)") from exc
        os.makedirs(os.path.join(directory, "videos"), exist_ok=True)
        for vid, video in videos.items():
            path = os.path.join(directory, "videos", f"{vid}.mp4")
            frames = (torch.as_tensor(video["frames"]).clamp(0, 1) * 255).round().to(torch.uint8)
            h, w = frames.shape[-2:]
            with av.open(path, "w") as container:
                stream = container.add_stream("libx264", rate=fps)
                stream.width, stream.height = w - w % 2, h - h % 2
                stream.pix_fmt = "yuv420p"
                for frame in frames[..., : h - h % 2, : w - w % 2].permute(0, 2, 3, 1).numpy():
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
                container.mux(stream.encode())
            out["videos"].append(path)
    return out
