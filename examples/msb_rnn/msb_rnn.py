"""MSB-RNN end to end (thesis chapter 5): fine-grained action detection in long videos.

Stages, each cached under ``--out`` so that a later stage re-runs without the
earlier ones (a cache is reused when the arguments it depends on are unchanged):

1. ``data``     seeded synthetic Shopping-like videos (or ``--data DIR``): frames, annotations, split;
2. ``motion``   per 6-frame chunk: pixel trajectories and stacked flow around the centre frame,
                the flow tracker's box, person-centric crops;
3. ``streams``  the stream CNNs (full frame / crop x appearance / trajectories / stacked flow),
                trained per chunk, then their features and softmax scores for every chunk;
4. ``sequence`` ``MultiStream`` projection to 200 + ``BiLSTMHead`` (60 units each way) trained on
                whole videos with stateful truncated BPTT; clips from chunk scores; mid-point-hit mAP
                and tIoU mAP. ``--ablations`` adds the thesis' tables 5.3 / 5.4, Fig. 5.7 and §5.6.

Run ``python examples/msb_rnn/msb_rnn.py --help``; the README next to this file explains the
outputs and the real-data layout.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import common  # noqa: E402

from scalekit.datasets.synthetic import SHOPPING_ACTIONS, make_synthetic_shopping, save_video_dataset  # noqa: E402
from scalekit.evaluation import clips_from_scores, clips_to_detections, midpoint_map, read_class_segments, tiou_map  # noqa: E402
from scalekit.sequence import BiLSTMHead, memory_limited_scores, stateful_windows  # noqa: E402
from scalekit.video import FlowTracker, MultiStream, OpenCVFlow, TorchFlow, TrajectoryConv, crop_boxes, pixel_trajectories, stacked_flow  # noqa: E402

STAGES = ("data", "motion", "streams", "sequence")
# (source, input): full frame or tracked crop x appearance, pixel trajectories, stacked flow.
STREAMS = {f"{src}_{kind}": (src, kind) for src in ("frame", "crop") for kind in ("rgb", "traj", "stack")}
FOUR_STREAMS = ("frame_rgb", "frame_traj", "crop_rgb", "crop_traj")  # MSB-RNN (thesis §5.3)
TWO_STREAMS = ("frame_rgb", "frame_traj")  # the two-stream baseline: full frame only
MEMORY_KS = (1, 2, 4, 8, 16)


def log(message: str) -> None:
    sys.stderr.write(f"[msb_rnn {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def fingerprint(**parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cached(path: str, key: str, stage: str, compute):
    """Load ``path`` when it was written under ``key``; else compute, save and return."""
    if os.path.exists(path):
        stored = torch.load(path, weights_only=True)
        if stored.get("key") == key:
            log(f"{stage}: cached {path}")
            return stored["value"]
    value = compute()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({"key": key, "value": value}, path + ".tmp")
    os.replace(path + ".tmp", path)
    return value


# ----------------------------------------------------------------------------- 1. data

def stage_data(args) -> str:
    """Write (or check) the dataset directory: videos/<id>.pt, annotations.json, split.json."""
    if args.data:
        for name in ("annotations.json", "split.json"):
            if not os.path.isfile(os.path.join(args.data, name)):
                common.fail(f"--data {args.data}: {name} is missing (see examples/msb_rnn/README.md)")
        return args.data
    root = os.path.join(args.out, "data")
    key = fingerprint(videos=args.videos, test=args.test_videos, chunks=args.chunks, size=args.size,
                      seed=args.data_seed, distractors=args.distractors)
    stamp = os.path.join(root, "key.txt")
    if os.path.exists(stamp) and open(stamp).read() == key:
        log(f"data: cached {root}")
        return root
    os.makedirs(os.path.join(root, "videos"), exist_ok=True)
    videos = {}
    total = args.videos + args.test_videos
    for i in common.Progress(range(total), desc="data"):
        vid = f"{'train' if i < args.videos else 'test'}{i:03d}"
        v = make_synthetic_shopping(num_chunks=args.chunks, size=tuple(args.size), seed=args.data_seed * 10_000 + i,
                                    num_distractors=args.distractors)
        torch.save((v["frames"] * 255).round().to(torch.uint8), os.path.join(root, "videos", f"{vid}.pt"))
        videos[vid] = v
    save_video_dataset(videos, root, SHOPPING_ACTIONS, video_files=args.write_mp4)
    with open(os.path.join(root, "split.json"), "w") as f:
        json.dump({"train": [v for v in videos if v.startswith("train")],
                   "test": [v for v in videos if v.startswith("test")]}, f)
    with open(stamp, "w") as f:
        f.write(key)
    return root


def load_dataset(root: str):
    """``(ground_truth, class_to_id, split)``: the readers' formats."""
    gt, classes = read_class_segments(os.path.join(root, "annotations.json"))
    names = json.load(open(os.path.join(root, "annotations.json")))
    if all(c in SHOPPING_ACTIONS for per in names.values() for c in per):
        classes = {c: i for i, c in enumerate(SHOPPING_ACTIONS)}  # keep every class, even an absent one
        gt, _ = read_class_segments(os.path.join(root, "annotations.json"), classes)
    split = json.load(open(os.path.join(root, "split.json")))
    for part in ("train", "test"):
        if not split.get(part):
            common.fail(f"{root}/split.json needs a non-empty {part!r} list")
        missing = [v for v in split[part] if v not in gt]
        if missing:
            common.fail(f"{root}/split.json: videos {missing[:3]} have no entry in annotations.json")
    return gt, classes, split


def read_frames(root: str, vid: str, size) -> torch.Tensor:
    """``[T, 3, H, W]`` float frames of one video: ``videos/<id>.pt`` (uint8) or a file PyAV decodes at 15 fps."""
    pt = os.path.join(root, "videos", f"{vid}.pt")
    if os.path.exists(pt):
        frames = torch.load(pt, weights_only=True).float() / 255
    else:
        files = [p for p in glob.glob(os.path.join(root, "videos", f"{vid}.*")) if not p.endswith(".pt")]
        if not files:
            common.fail(f"no video for {vid!r} in {root}/videos (expected {vid}.pt or {vid}.mp4)")
        from scalekit.video import read_video_frames
        frames = torch.stack(list(read_video_frames(files[0], target_fps=15)))  # 15 fps, thesis §5.4.2
    if tuple(frames.shape[-2:]) != tuple(size):
        frames = F.interpolate(frames, size=tuple(size), mode="bilinear", align_corners=False)
    return frames


def chunk_labels(gt: dict, num_chunks: int, chunk_len: int) -> torch.Tensor:
    """Per-chunk targets: the class (+1) of the interval holding the chunk's centre frame, else 0."""
    labels = torch.zeros(num_chunks, dtype=torch.int64)
    centres = np.arange(num_chunks) * chunk_len + chunk_len // 2
    for c, (a, b) in zip(gt["labels"].tolist(), gt["segments"].tolist()):
        labels[torch.from_numpy((centres >= a) & (centres <= b))] = c + 1
    return labels


# ----------------------------------------------------------------------------- 2. motion

def make_flow(name: str, levels: int, iterations: int):
    if name == "auto":
        try:
            return OpenCVFlow()
        except ImportError:
            return TorchFlow(levels=levels, iterations=iterations)
    if name == "opencv":
        try:
            return OpenCVFlow()
        except ImportError:
            common.fail("--flow opencv needs OpenCV: pip install 'scalekit[video]' (or --flow torch)")
    return TorchFlow(levels=levels, iterations=iterations)


def video_motion(frames: torch.Tensor, flow, args) -> dict:
    """Per chunk: centre frame, pixel trajectories, stacked flow, tracked box, crops (float16)."""
    n = frames.shape[0] // args.chunk_len
    centres = [i * args.chunk_len + args.chunk_len // 2 for i in range(n)]
    traj = torch.stack([pixel_trajectories(frames, c, k=args.k, flow=flow) for c in centres])  # [N, 2, 2k, H, W]
    stack = torch.stack([stacked_flow(frames, c, k=args.k, flow=flow) for c in centres])
    magnitude = stack.norm(dim=1).mean(1)  # [N, H, W]: what moved during each chunk
    boxes = FlowTracker(tuple(args.box), threshold=args.track_threshold).track(magnitude)
    rgb = frames[centres]
    crop = lambda x: crop_boxes((x.flatten(1, 2) if x.dim() == 5 else x).float(), boxes, size=tuple(args.crop_size)).reshape(
        n, *x.shape[1:-2], *args.crop_size)  # noqa: E731
    out = {"frame_rgb": rgb, "frame_traj": traj, "frame_stack": stack, "crop_rgb": crop(rgb),
           "crop_traj": crop(traj), "crop_stack": crop(stack)}
    out = {k: v.half() for k, v in out.items()}
    out["boxes"] = boxes
    return out


def stage_motion(args, root, vids) -> dict:
    flow = make_flow(args.flow, args.flow_levels, args.flow_iterations)
    key = fingerprint(data=root, flow=flow.__class__.__name__, it=args.flow_iterations, lv=args.flow_levels, k=args.k, box=args.box, crop=args.crop_size,
                      thr=args.track_threshold, size=args.size, chunk=args.chunk_len,
                      stamp=open(os.path.join(root, "key.txt")).read() if os.path.exists(os.path.join(root, "key.txt")) else "")
    out = {}
    for vid in common.Progress(vids, desc="motion"):
        path = os.path.join(args.out, "motion", f"{vid}.pt")
        out[vid] = cached(path, key, "motion", lambda: video_motion(read_frames(root, vid, args.size), flow, args))
    return out


# ----------------------------------------------------------------------------- 3. streams

class StreamCNN(nn.Module):
    """A small stream CNN: appearance (RGB), pixel trajectories (``TrajectoryConv`` first, a
    ``1 x 2k`` kernel in time only) or stacked flow (a 3 x 3 kernel on the 4k flow channels)."""

    def __init__(self, kind: str, num_classes: int, k: int = 3, width: int = 16, feat_dim: int = 64) -> None:
        super().__init__()
        if kind == "traj":
            first = TrajectoryConv(k=k, out_channels=width)
        elif kind == "stack":
            first = nn.Sequential(nn.Flatten(1, 2), nn.Conv2d(4 * k, width, 3, padding=1))
        else:
            first = nn.Conv2d(3, width, 3, padding=1)
        self.scale = 0.25 if kind in ("traj", "stack") else 1.0  # flow in pixels to about unit range
        self.features = nn.Sequential(
            first, nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.BatchNorm2d(4 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, feat_dim), nn.ReLU())
        self.classifier = nn.Linear(feat_dim, num_classes)

    def forward(self, x):
        feat = self.features(x.float() * self.scale)
        return feat, self.classifier(feat)


def train_loop(name, model, optimizer, epochs, steps, args, seed_dir, total=None):
    """Run ``epochs`` epochs of ``steps(epoch) -> iterable of losses``, checkpoint every epoch,
    resume from the checkpoint with ``--resume``. Logs to JSONL and plots the loss."""
    ckpt = os.path.join(seed_dir, "checkpoints", f"{name}.pt")
    start = 0
    if args.resume and os.path.exists(ckpt):
        start = common.load_checkpoint(ckpt, model=model, optimizer=optimizer, map_location=args.device)["epoch"] + 1
        log(f"{name}: resumed from {ckpt} (epoch {start})")
    jsonl = os.path.join(seed_dir, "logs", f"{name}.jsonl")
    logger = common.JsonlLog(jsonl)
    if start == 0 and os.path.exists(jsonl):
        os.remove(jsonl)
    iteration = 0
    for epoch in range(start, epochs):
        model.train()
        bar = common.Progress(steps(epoch), total=total, desc=f"{name} epoch {epoch + 1}/{epochs}", every=30)
        loss_sum, count = 0.0, 0
        for loss in bar:
            loss_sum, count, iteration = loss_sum + loss, count + 1, iteration + 1
            bar.set(loss=loss_sum / count)
            logger.write(epoch=epoch, iter=epoch * 10_000 + iteration, loss=loss)
        logger.write(epoch=epoch, iter=(epoch + 1) * 10_000, loss_epoch=loss_sum / max(count, 1))
        common.save_checkpoint(ckpt, model=model, optimizer=optimizer, epoch=epoch)
    common.plot_curves(jsonl, os.path.join(seed_dir, "plots", f"{name}.png"), keys=["loss_epoch"])
    model.eval()
    return model


def stage_streams(args, motion, labels, split, num_classes, seed_dir, streams) -> dict:
    """Train each stream CNN per chunk; return ``{vid: {stream: features}}`` and chunk softmax scores."""
    device = torch.device(args.device)
    out = {"features": {v: {} for v in motion}, "scores": {v: {} for v in motion}}
    for name in streams:
        kind = STREAMS[name][1]
        key = fingerprint(motion=sorted(motion), stream=name, epochs=args.stream_epochs, seed=args.seed,
                          lr=args.lr, motion_key=args.motion_key)
        path = os.path.join(seed_dir, "streams", f"{name}.pt")

        def compute():
            common.seed_everything(args.seed * 100 + list(STREAMS).index(name))
            x = torch.cat([motion[v][name] for v in split["train"]])
            y = torch.cat([labels[v] for v in split["train"]])
            model = StreamCNN(kind, num_classes + 1, k=args.k).to(device)
            optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-4)
            gen = torch.Generator().manual_seed(args.seed)

            def steps(epoch):
                order = torch.randperm(len(y), generator=gen)
                for i in range(0, len(y), args.batch):
                    idx = order[i : i + args.batch]
                    with common.autocast(device, args.amp):
                        logits = model(x[idx].to(device))[1]
                        loss = F.cross_entropy(logits.float(), y[idx].to(device))
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    yield loss.item()

            train_loop(f"stream_{name}", model, optimizer, args.stream_epochs, steps, args, seed_dir,
                       total=-(-len(y) // args.batch))
            feats, scores = {}, {}
            with torch.no_grad():
                for v in motion:
                    f, logits = zip(*[model(b.to(device)) for b in motion[v][name].split(256)])
                    feats[v] = torch.cat(f).cpu()
                    scores[v] = torch.cat(logits).softmax(-1).cpu()
            return {"features": feats, "scores": scores}

        result = cached(path, key, f"streams ({name})", compute)
        for v in motion:
            out["features"][v][name] = result["features"][v]
            out["scores"][v][name] = result["scores"][v]
    return out


# ----------------------------------------------------------------------------- 4. sequence

class SequenceModel(nn.Module):
    """``MultiStream`` over cached stream features (projection to ``proj_dim``), then a
    ``BiLSTMHead`` (``lstm=True``) or one per-chunk softmax layer (``lstm=False``)."""

    def __init__(self, streams, feat_dim: int, num_classes: int, *, proj_dim: int = 200, hidden: int = 60,
                 lstm: bool = True) -> None:
        super().__init__()
        # Thesis §5.4.2: fc7 features projected to 200, two LSTMs of 60 hidden units.
        self.streams = list(streams)
        self.fuse = MultiStream({s: nn.Identity() for s in self.streams}, proj_dim=proj_dim,
                                feature_dims={s: feat_dim for s in self.streams})
        self.drop = nn.Dropout(0.3)
        self.head = BiLSTMHead(proj_dim, hidden, num_classes) if lstm else nn.Linear(proj_dim, num_classes)
        self.lstm = lstm

    def project(self, feats: dict) -> torch.Tensor:
        return self.drop(self.fuse({s: feats[s] for s in self.streams}))[:, None]  # [T, 1, proj_dim]


def continuation(labels: torch.Tensor, trimmed: bool) -> torch.Tensor | None:
    """``[T, 1]`` indicators: 0 where the label changes (trimmed training, §5.6), else None."""
    if not trimmed:
        return None
    cont = torch.ones(len(labels), 1)
    cont[0] = 0
    cont[1:][labels[1:] != labels[:-1]] = 0
    return cont


def train_sequence(name, config, feats, labels, split, num_classes, args, seed_dir):
    device = torch.device(args.device)
    common.seed_everything(args.seed * 1000 + int(fingerprint(n=name), 16) % 997)
    feat_dim = next(iter(feats[split["train"][0]].values())).shape[1]
    model = SequenceModel(config["streams"], feat_dim, num_classes + 1, lstm=config["lstm"]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lstm_lr)
    gen = torch.Generator().manual_seed(args.seed)

    def steps(epoch):
        for i in torch.randperm(len(split["train"]), generator=gen).tolist():
            vid = split["train"][i]
            x = model.project({s: f.to(device) for s, f in feats[vid].items()})
            y = labels[vid].to(device)
            if config["lstm"]:
                cont = continuation(labels[vid], config.get("trimmed", False))
                cont = None if cont is None else cont.to(device)
                loss = 0.0
                for w in stateful_windows(model.head, x, args.window, cont):  # truncated BPTT, state carried
                    target = y[w["start"] : w["end"]]
                    for probs in (w["forward"], w["backward"]):  # each direction's own softmax classifier
                        loss = loss + F.nll_loss(probs[:, 0].clamp(min=1e-8).log(), target, reduction="sum")
                loss = loss / len(y)
            else:
                loss = F.cross_entropy(model.head(x[:, 0]), y)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            yield loss.item()

    return train_loop(f"seq_{name}", model, optimizer, args.lstm_epochs, steps, args, seed_dir,
                      total=len(split["train"]))


def evaluate(scores: dict, gt: dict, num_classes: int, chunk_len: int) -> dict:
    """Clips from ``{vid: [T, C + 1]}`` chunk scores (background dropped), mid-point-hit and tIoU mAP."""
    detections = {}
    for vid, s in scores.items():
        d = clips_to_detections(clips_from_scores(s[:, 1:], chunk_len=chunk_len))
        d["segments"][:, 1] -= 1  # clips end exclusive; annotations are inclusive frame ranges
        detections[vid] = d
    truth = {v: gt[v] for v in scores}
    classes = list(range(num_classes))
    mid = midpoint_map(detections, truth, inclusive_end=True, classes=classes)
    tiou = tiou_map(detections, truth, thresholds=(0.5,), inclusive_end=True, classes=classes)
    return {"midpoint_map": mid["mAP"], "tiou_map@0.5": tiou["mAP"],
            "per_class": {SHOPPING_ACTIONS[c] if num_classes == len(SHOPPING_ACTIONS) else str(c): ap
                          for c, ap in mid["per_class"].items()}}


def sequence_configs(ablations: bool) -> dict:
    configs = {"msb_rnn": {"streams": FOUR_STREAMS, "lstm": True}}
    if ablations:
        for s in ("crop_traj", "crop_stack", "crop_rgb"):  # Table 5.3 (person-centric streams)
            configs[f"lstm_{s}"] = {"streams": (s,), "lstm": True}
        configs["two_stream"] = {"streams": TWO_STREAMS, "lstm": False}  # Table 5.4
        configs["multi_stream"] = {"streams": FOUR_STREAMS, "lstm": False}
        configs["two_stream_lstm"] = {"streams": TWO_STREAMS, "lstm": True}
        configs["msb_rnn_trimmed"] = {"streams": FOUR_STREAMS, "lstm": True, "trimmed": True}  # §5.6
    return configs


def stage_sequence(args, streams_out, labels, gt, split, num_classes, seed_dir) -> dict:
    results = {}
    test = split["test"]
    feats = streams_out["features"]
    if args.ablations:  # per-chunk softmax of each stream alone: "without LSTM" in Table 5.3
        for s in STREAMS:
            if s in feats[test[0]]:
                results[f"stream_{s}"] = evaluate({v: streams_out["scores"][v][s] for v in test}, gt, num_classes,
                                                  args.chunk_len)
    device = torch.device(args.device)
    for name, config in sequence_configs(args.ablations).items():
        key = fingerprint(config=config, epochs=args.lstm_epochs, seed=args.seed, window=args.window,
                          lr=args.lstm_lr, streams_key=args.streams_key)
        path = os.path.join(seed_dir, "sequence", f"{name}.pt")

        def compute():
            model = train_sequence(name, config, feats, labels, split, num_classes, args, seed_dir)
            out, per_video = {}, {}
            with torch.no_grad():
                xs = {v: model.project({s: f.to(device) for s, f in feats[v].items()}) for v in test}
                if not config["lstm"]:
                    out["chunk"] = evaluate({v: model.head(xs[v][:, 0]).softmax(-1).cpu() for v in test}, gt,
                                            num_classes, args.chunk_len)
                    return {"results": out, "scores": {}}
                dirs = {v: model.head.directions(xs[v]) for v in test}
                for tag, pick in (("forward", 0), ("backward", 1)):
                    out[tag] = evaluate({v: d[pick][:, 0].cpu() for v, d in dirs.items()}, gt, num_classes,
                                        args.chunk_len)
                bi = {v: ((d[0] + d[1]) / 2)[:, 0].cpu() for v, d in dirs.items()}
                out["bidirectional"] = evaluate(bi, gt, num_classes, args.chunk_len)
                if args.ablations and name in ("lstm_crop_traj", "lstm_crop_rgb", "msb_rnn"):  # Fig. 5.7
                    for k in MEMORY_KS:
                        s = {v: memory_limited_scores(model.head, xs[v], k)[:, 0].cpu() for v in test}
                        out[f"forward_k{k}"] = evaluate(s, gt, num_classes, args.chunk_len)
                per_video = bi
            return {"results": out, "scores": per_video}

        value = cached(path, key, f"sequence ({name})", compute)
        results[name] = value["results"]
        if name == "msb_rnn":
            results["_scores"] = value["scores"]
    return results


# ----------------------------------------------------------------------------- driver

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="runs/msb_rnn", help="work directory: caches, checkpoints, logs, results")
    p.add_argument("--data", help="real data: a directory with annotations.json, split.json and videos/ (README)")
    p.add_argument("--videos", type=int, default=16, help="synthetic training videos")
    p.add_argument("--test-videos", type=int, default=6, help="synthetic test videos")
    p.add_argument("--chunks", type=int, default=32, help="chunks per synthetic video")
    p.add_argument("--size", type=int, nargs=2, default=(64, 80), metavar=("H", "W"), help="frame size")
    p.add_argument("--distractors", type=int, default=3, help="moving distractors per synthetic video")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--write-mp4", action="store_true", help="also write the synthetic videos as MP4 (needs PyAV)")
    p.add_argument("--chunk-len", type=int, default=6, help="frames per chunk (thesis §5.3)")
    p.add_argument("--k", type=int, default=3, help="flow neighbours each side of a chunk's centre frame (§5.4.2)")
    p.add_argument("--flow", choices=("torch", "opencv", "auto"), default="torch",
                   help="flow backend: dependency-free TorchFlow, OpenCV DIS, or OpenCV when installed")
    p.add_argument("--flow-levels", type=int, default=1, help="TorchFlow pyramid levels (README: why 1)")
    p.add_argument("--flow-iterations", type=int, default=5,
                   help="TorchFlow Gauss-Newton steps per level (each moves at most 1 px: 5 reach 5 px)")
    p.add_argument("--box", type=int, nargs=2, default=(40, 40), metavar=("H", "W"), help="tracker box size")
    p.add_argument("--crop-size", type=int, nargs=2, default=(32, 32), metavar=("H", "W"), help="crops resized to")
    p.add_argument("--track-threshold", type=float, default=500.0,
                   help="summed flow magnitude that moves the box (walking, not a hand or a distractor)")
    p.add_argument("--seed", type=int, default=0, help="training seed (stream CNNs and LSTMs)")
    p.add_argument("--stream-epochs", type=int, default=12)
    p.add_argument("--lstm-epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3, help="stream CNN learning rate (Adam)")
    p.add_argument("--lstm-lr", type=float, default=3e-3, help="projection + LSTM learning rate (Adam)")
    p.add_argument("--window", type=int, default=16, help="chunks per truncated-BPTT window")
    p.add_argument("--ablations", action="store_true", help="also run the thesis' ablations (tables 5.3, 5.4, ...)")
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES), help="stop after the last one named")
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", action="store_true", help="mixed precision for the stream CNNs")
    p.add_argument("--resume", action="store_true", help="continue interrupted trainings from their checkpoints")
    args = p.parse_args(argv)
    for name in ("videos", "test_videos", "chunks", "stream_epochs", "lstm_epochs", "batch", "window", "k", "chunk_len"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.box[0] > args.size[0] or args.box[1] > args.size[1]:
        p.error(f"--box {args.box} must fit in --size {args.size}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    common.Distributed(args.device)  # one clear error when CUDA is asked for and absent
    start = time.perf_counter()
    last = max(STAGES.index(s) for s in args.stages)
    root = stage_data(args)
    if last < 1:
        return {}
    gt, classes, split = load_dataset(root)
    num_classes = len(classes)
    vids = split["train"] + split["test"]
    motion = stage_motion(args, root, vids)
    labels = {v: chunk_labels(gt[v], len(motion[v]["boxes"]), args.chunk_len) for v in vids}
    args.motion_key = fingerprint(root=root, files={v: os.path.getmtime(os.path.join(args.out, "motion", f"{v}.pt"))
                                                    for v in vids})
    if last < 2:
        return {}
    seed_dir = os.path.join(args.out, f"seed{args.seed}")
    needed = list(STREAMS) if args.ablations else list(FOUR_STREAMS)
    streams_out = stage_streams(args, motion, labels, split, num_classes, seed_dir, needed)
    args.streams_key = fingerprint(files={s: os.path.getmtime(os.path.join(seed_dir, "streams", f"{s}.pt"))
                                          for s in needed})
    if last < 3:
        return {}
    results = stage_sequence(args, streams_out, labels, gt, split, num_classes, seed_dir)
    scores = results.pop("_scores", {})
    summary = {"args": {k: v for k, v in vars(args).items() if not k.endswith("_key")}, "results": results,
               "wall_s": time.perf_counter() - start}
    with open(os.path.join(seed_dir, "results.json"), "w") as f:
        json.dump(summary, f, indent=1, default=float)
    torch.save({"scores": scores, "boxes": {v: motion[v]["boxes"] for v in split["test"]},
                "labels": {v: labels[v] for v in split["test"]}}, os.path.join(seed_dir, "test_scores.pt"))
    m = results["msb_rnn"]["bidirectional"]
    log(f"MSB-RNN on {len(split['test'])} test videos: mid-point mAP {m['midpoint_map']:.4f}, "
        f"tIoU@0.5 mAP {m['tiou_map@0.5']:.4f}; results in {seed_dir}/results.json "
        f"({time.perf_counter() - start:.0f} s)")
    return summary


if __name__ == "__main__":
    main()
