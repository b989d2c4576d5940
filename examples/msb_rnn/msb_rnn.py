"""MSB-RNN end to end (thesis chapter 5): fine-grained action detection in long videos.

Stages, each cached under ``--out`` while its arguments are unchanged: ``data`` (synthetic Shopping-like
videos, or ``--data DIR``), ``motion`` (per 6-frame chunk: trajectories, stacked flow, tracker box, crops),
``streams`` (a CNN per stream, trained per chunk), ``sequence`` (``MultiStream`` to 200 + ``BiLSTMHead`` on
whole videos, truncated BPTT, the epoch chosen on the validation split; clips; mid-point-hit and tIoU mAP).
``--ablations`` adds tables 5.3 / 5.4, Fig. 5.7 and §5.4.3 (trimmed training). Every method step is a
scalekit call; README.md explains outputs and data layout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import common  # noqa: E402

from scalekit.datasets import read_video, read_video_dataset  # noqa: E402
from scalekit.datasets.synthetic import SHOPPING_ACTIONS, make_synthetic_shopping, save_video_dataset  # noqa: E402
from scalekit.evaluation import clips_to_detections, midpoint_map, tiou_map  # noqa: E402
from scalekit.sequence import (BiLSTMHead, clips_from_scores, continuation_indicators,  # noqa: E402
                               memory_limited_scores, truncated_bptt_loss)
from scalekit.video import (FlowTracker, MultiStream, OpenCVFlow, StreamCNN, TorchFlow, chunk_labels,  # noqa: E402
                            stream_inputs)

STAGES = ("data", "motion", "streams", "sequence")
STREAMS = {f"{src}_{kind}": kind for src in ("frame", "crop") for kind in ("rgb", "traj", "stack")}
FOUR_STREAMS = ("frame_rgb", "frame_traj", "crop_rgb", "crop_traj")  # MSB-RNN (thesis §5.3)
TWO_STREAMS = ("frame_rgb", "frame_traj")  # the two-stream baseline: full frame only
MEMORY_KS = (1, 2, 4, 8, 16)
log, fingerprint = common.stage_log("msb_rnn"), common.fingerprint


def stage_data(args) -> str:
    """The dataset directory (``scalekit.datasets.read_video_dataset``'s layout): --data, or synthetic."""
    if args.data:
        return args.data
    root, parts, subject, i = os.path.join(args.out, "data"), {}, {}, 0
    for part, n in (("train", args.videos), ("val", args.val_videos), ("test", args.test_videos)):
        parts[part] = [f"{part}{i + j:03d}" for j in range(n)]  # split by subject (§5.4.1): none recurs across
        first = len(set(subject.values()))  # splits; --videos-per-subject videos each
        subject.update({v: first + j // args.videos_per_subject for j, v in enumerate(parts[part])})
        i += n

    def build():
        videos = {vid: make_synthetic_shopping(args.chunks, size=tuple(args.size), seed=args.data_seed * 10_000 + i,
                                               num_distractors=args.distractors, subject=subject[vid])
                  for i, vid in enumerate(common.Progress(list(subject), desc="data"))}
        save_video_dataset(videos, root, SHOPPING_ACTIONS, video_files=args.write_mp4, frame_tensors=True, splits=parts)
        with open(os.path.join(root, "subjects.json"), "w") as f:
            json.dump(subject, f)

    key = fingerprint(videos=args.videos, val=args.val_videos, test=args.test_videos, chunks=args.chunks,
                      size=args.size, seed=args.data_seed, distractors=args.distractors, per=args.videos_per_subject)
    return common.cached_dir(root, key, build, log=log, name="data")


def load_dataset(root: str):
    """``(ground_truth, class_to_id, split)``, with Shopping's class ids when every name is one of them."""
    try:
        classes = read_video_dataset(root)[1]  # Shopping's ids: a class absent from the data keeps its id
        return read_video_dataset(root, SHOPPING_ACTIONS if set(classes) <= set(SHOPPING_ACTIONS) else classes)
    except (OSError, ValueError) as exc:
        common.fail(f"--data {root}: {exc} (see examples/msb_rnn/README.md)")


def stage_motion(args, root, vids) -> dict:
    flow = TorchFlow(levels=args.flow_levels, iterations=args.flow_iterations)
    if args.flow != "torch":
        try:
            flow = OpenCVFlow()
        except ImportError:
            if args.flow == "opencv":
                common.fail("--flow opencv needs OpenCV: pip install 'scalekit[video]' (or --flow torch)")
    tracker = FlowTracker(tuple(args.box), threshold=args.track_threshold)
    stamp = os.path.join(root, "key.txt")
    key = fingerprint(data=root, flow=repr(flow), k=args.k, box=args.box, crop=args.crop_size, thr=args.track_threshold,
                      size=args.size, chunk=args.chunk_len, stamp=open(stamp).read() if os.path.exists(stamp) else "")

    def compute(vid):  # load_dataset checked that every video has a file
        out = stream_inputs(read_video(root, vid, size=tuple(args.size)), tracker, chunk_len=args.chunk_len, k=args.k,
                            flow=flow, crop_size=tuple(args.crop_size))
        return {k: v if k == "boxes" else v.half() for k, v in out.items()}  # float16 cache

    return {vid: common.cached(os.path.join(args.out, "motion", f"{vid}.pt"), key, lambda: compute(vid), log=log,
                               name="motion") for vid in common.Progress(vids, desc="motion")}


def stage_streams(args, motion, labels, split, num_classes, seed_dir, streams) -> dict:
    """Train each stream CNN per chunk; ``{"features"|"scores": {vid: {stream: [T, D]}}}`` (softmax scores)."""
    device, results = torch.device(args.device), {}
    for name in streams:
        def compute():
            common.seed_everything(args.seed * 100 + list(STREAMS).index(name))
            x = torch.cat([motion[v][name] for v in split["train"]])
            y = torch.cat([labels[v] for v in split["train"]])
            model = StreamCNN(STREAMS[name], num_classes + 1, k=args.k).to(device)
            optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-4)
            gen = torch.Generator().manual_seed(args.seed)

            def steps(epoch):
                order = torch.randperm(len(y), generator=gen)
                for i in range(0, len(y), args.batch):
                    idx = order[i : i + args.batch]
                    with common.autocast(device, args.amp):
                        loss = F.cross_entropy(model(x[idx].to(device))[1].float(), y[idx].to(device))
                    yield common.optimizer_step(optimizer, loss)

            common.train_epochs(f"stream_{name}", model, optimizer, args.stream_epochs, steps, folder=seed_dir,
                                resume=args.resume, map_location=args.device, total=-(-len(y) // args.batch), log=log)
            with torch.no_grad():
                f, s = zip(*[zip(*[model(b.to(device)) for b in motion[v][name].split(256)]) for v in motion])
            return {"features": {v: torch.cat(a).cpu() for v, a in zip(motion, f)},
                    "scores": {v: torch.cat(a).softmax(-1).cpu() for v, a in zip(motion, s)}}

        key = fingerprint(motion=sorted(motion), stream=name, epochs=args.stream_epochs, seed=args.seed, lr=args.lr,
                          motion_key=args.motion_key)
        results[name] = common.cached(os.path.join(seed_dir, "streams", f"{name}.pt"), key, compute, log=log,
                                      name=f"streams ({name})")
    return {part: {v: {s: r[part][v] for s, r in results.items()} for v in motion} for part in ("features", "scores")}


class SequenceModel(nn.Module):
    """``MultiStream`` over cached stream features (to 200, §5.4.2), dropout, then a ``BiLSTMHead``
    (60 units each way, or one way with ``direction``) or, for the no-LSTM baselines, one softmax layer."""

    def __init__(self, streams, feat_dim: int, num_classes: int, *, lstm: bool = True, direction: str = "both") -> None:
        super().__init__()
        self.streams = list(streams)
        self.fuse = MultiStream({s: nn.Identity() for s in self.streams}, proj_dim=200,
                                feature_dims={s: feat_dim for s in self.streams})
        self.drop = nn.Dropout(0.3)
        self.head = BiLSTMHead(200, 60, num_classes, direction=direction) if lstm else nn.Linear(200, num_classes)

    def project(self, feats: dict) -> torch.Tensor:
        return self.drop(self.fuse({s: feats[s] for s in self.streams}))[:, None]  # [T, 1, 200]

    @torch.no_grad()
    def scores(self, feats: dict) -> torch.Tensor:  # [T, C + 1]: the head's (both directions averaged, or its one)
        x = self.project(feats)
        return (self.head(x)[0] if isinstance(self.head, BiLSTMHead) else self.head(x).softmax(-1))[:, 0].cpu()


def train_sequence(name, config, feats, labels, split, num_classes, args, seed_dir, ev):
    """Train one configuration; validation alone picks the epoch (of every ``--select-every``)."""
    device = torch.device(args.device)
    common.seed_everything(args.seed * 1000 + int(fingerprint(n=name), 16) % 997)
    feat_dim = next(iter(feats[split["train"][0]].values())).shape[1]
    model = SequenceModel(config["streams"], feat_dim, num_classes + 1, lstm=config["lstm"],
                          direction=config.get("direction", "both")).to(device)
    optimizer, gen = torch.optim.Adam(model.parameters(), lr=args.lstm_lr), torch.Generator().manual_seed(args.seed)
    best = common.KeepBest(model, lambda: ev({v: model.eval().scores({s: f.to(device) for s, f in feats[v].items()})
                                              for v in split["val"]})["midpoint_map"], args.lstm_epochs)

    def steps(epoch):
        if epoch and epoch % args.select_every == 0 and split.get("val"):
            best(epoch)
        model.train()
        for i in torch.randperm(len(split["train"]), generator=gen).tolist():
            vid = split["train"][i]
            x = model.project({s: f.to(device) for s, f in feats[vid].items()})
            y = labels[vid].to(device)[:, None]
            if config["lstm"]:  # §5.4.3: trimmed training resets the LSTM at every action boundary
                cont = continuation_indicators(y) if config.get("trimmed") else None
                loss = truncated_bptt_loss(model.head, x, y, args.window, cont=cont)  # each direction's own loss
            else:
                loss = F.cross_entropy(model.head(x[:, 0]), y[:, 0])
            yield common.optimizer_step(optimizer, loss, clip_norm=5.0)

    common.train_epochs(f"seq_{name}", model, optimizer, args.lstm_epochs, steps, folder=seed_dir,
                        resume=args.resume, map_location=args.device, total=len(split["train"]), log=log)
    if split.get("val"):
        best(args.lstm_epochs)
    return model.eval(), best.restore()


def detections(scores, chunk_len: int) -> dict:
    """Clips (inclusive frame ranges, as the annotations) from ``[T, C + 1]`` chunk scores, background dropped."""
    return clips_to_detections(clips_from_scores(scores[:, 1:], chunk_len=chunk_len, inclusive_end=True))


def evaluate(scores: dict, gt: dict, num_classes: int, chunk_len: int) -> dict:
    """Mid-point-hit and tIoU mAP (and mid-point AP per class) of ``{vid: [T, C + 1]}`` chunk scores."""
    dets = {v: detections(s, chunk_len) for v, s in scores.items()}
    truth, classes = {v: gt[v] for v in scores}, list(range(num_classes))
    mid = midpoint_map(dets, truth, inclusive_end=True, classes=classes)
    tiou = tiou_map(dets, truth, thresholds=(0.5,), inclusive_end=True, classes=classes)
    names = SHOPPING_ACTIONS if num_classes == len(SHOPPING_ACTIONS) else [str(c) for c in classes]
    return {"midpoint_map": mid["mAP"], "tiou_map@0.5": tiou["mAP"],
            "per_class": {names[c]: ap for c, ap in mid["per_class"].items()}}


def sequence_configs(ablations: bool) -> dict:
    four, two, crops = {"streams": FOUR_STREAMS}, {"streams": TWO_STREAMS}, ("crop_traj", "crop_stack", "crop_rgb")
    if not ablations:
        return {"msb_rnn": {**four, "lstm": True}}
    return {"msb_rnn": {**four, "lstm": True}, **{f"lstm_{s}": {"streams": (s,), "lstm": True} for s in crops},  # T. 5.3
            "two_stream": {**two, "lstm": False}, "multi_stream": {**four, "lstm": False},  # Table 5.4
            "two_stream_lstm": {**two, "lstm": True}, "msb_rnn_trimmed": {**four, "lstm": True, "trimmed": True},  # §5.4.3
            **{f"lstm_{d}": {**four, "lstm": True, "direction": d} for d in ("forward", "backward")}}  # own models


def stage_sequence(args, streams_out, labels, gt, split, num_classes, seed_dir) -> tuple[dict, dict]:
    """``(results, test scores)``: ``results[config][read-out]`` as :func:`evaluate` (plus ``"selection"``:
    the validation's chosen epoch and curve); ``scores[config][read-out][vid]`` ``[T, C + 1]``."""
    test, feats, device = split["test"], streams_out["features"], torch.device(args.device)
    ev = lambda scores: evaluate(scores, gt, num_classes, args.chunk_len)  # noqa: E731
    scores = {f"stream_{s}": {"chunk": {v: streams_out["scores"][v][s] for v in test}}  # each stream's own
              for s in (STREAMS if args.ablations else ())}  # softmax: "without LSTM" in Table 5.3
    results = {name: {"chunk": ev(tags["chunk"])} for name, tags in scores.items()}
    for name, config in sequence_configs(args.ablations).items():
        def compute():
            model, selection = train_sequence(name, config, feats, labels, split, num_classes, args, seed_dir, ev)
            own = config.get("direction", "bidirectional") if config["lstm"] else "chunk"
            out = {own: {v: model.scores(feats[v]) for v in test}}
            with torch.no_grad():
                xs = {v: model.project({s: f.to(device) for s, f in feats[v].items()}) for v in test}
                if own == "bidirectional":  # the bi-LSTM's one-direction read-outs
                    dirs = {v: model.head.directions(xs[v]) for v in test}
                    out.update({tag: {v: d[pick][:, 0].cpu() for v, d in dirs.items()}
                                for tag, pick in (("forward", 0), ("backward", 1))})
                if args.ablations and name in ("lstm_crop_traj", "lstm_crop_rgb", "msb_rnn", "lstm_forward"):  # Fig 5.7
                    for k in MEMORY_KS:
                        out[f"forward_k{k}"] = {v: memory_limited_scores(model.head, xs[v], k)[:, 0].cpu() for v in test}
            return {"results": {**{tag: ev(s) for tag, s in out.items()}, "selection": selection}, "scores": out}

        key = fingerprint(config=config, epochs=args.lstm_epochs, seed=args.seed, window=args.window, lr=args.lstm_lr,
                          streams_key=args.streams_key, every=args.select_every, val=split.get("val"))
        value = common.cached(os.path.join(seed_dir, "sequence", f"{name}.pt"), key, compute, log=log,
                              name=f"sequence ({name})")
        results[name], scores[name] = value["results"], value["scores"]
    return results, scores


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a("--out", default="runs/msb_rnn", help="work directory: caches, checkpoints, logs, results")
    a("--data", help="real data: a directory with annotations.json, split.json and videos/ (README)")
    a("--videos", type=int, default=16, help="synthetic training videos")
    a("--val-videos", type=int, default=4, help="synthetic validation videos (they choose the LSTM epoch)")
    a("--test-videos", type=int, default=6, help="synthetic test videos")
    a("--videos-per-subject", type=int, default=4, help="synthetic videos per actor; no actor in two splits")
    a("--chunks", type=int, default=32, help="chunks per synthetic video")
    a("--size", type=int, nargs=2, default=(64, 80), metavar=("H", "W"), help="frame size")
    a("--distractors", type=int, default=3, help="moving distractors per synthetic video")
    a("--write-mp4", action="store_true", help="also write the synthetic videos as MP4 (needs PyAV)")
    a("--chunk-len", type=int, default=6, help="frames per chunk (thesis §5.3)")
    a("--k", type=int, default=3, help="flow neighbours each side of a chunk's centre frame (§5.4.2)")
    a("--flow", choices=("torch", "opencv", "auto"), default="torch",
      help="flow backend: dependency-free TorchFlow, OpenCV DIS, or OpenCV when installed")
    a("--flow-levels", type=int, default=1, help="TorchFlow pyramid levels (README: why 1)")
    a("--flow-iterations", type=int, default=5, help="TorchFlow Gauss-Newton steps per level (each moves <= 1 px)")
    a("--box", type=int, nargs=2, default=(40, 40), metavar=("H", "W"), help="tracker box size")
    a("--crop-size", type=int, nargs=2, default=(32, 32), metavar=("H", "W"), help="crops resized to")
    a("--track-threshold", type=float, default=500.0,
      help="summed flow magnitude that moves the box (walking, not a hand or a distractor)")
    a("--seed", type=int, default=0, help="training seed (stream CNNs and LSTMs)")
    for flag, default in (("--data-seed", 0), ("--stream-epochs", 12), ("--lstm-epochs", 30), ("--batch", 32)):
        a(flag, type=int, default=default)
    a("--lr", type=float, default=3e-3, help="stream CNN learning rate (Adam)")
    a("--lstm-lr", type=float, default=3e-3, help="projection + LSTM learning rate (Adam)")
    a("--window", type=int, default=16, help="chunks per truncated-BPTT window")
    a("--select-every", type=int, default=5, help="validation mAP every this many LSTM epochs; the best is kept")
    a("--ablations", action="store_true", help="also run the thesis' ablations (tables 5.3, 5.4, ...)")
    a("--stages", nargs="+", choices=STAGES, default=list(STAGES), help="stop after the last one named")
    a("--device", default="cpu")
    a("--amp", action="store_true", help="mixed precision for the stream CNNs")
    a("--resume", action="store_true", help="continue interrupted trainings from their checkpoints")
    args = p.parse_args(argv)
    for name in ("videos", "val_videos", "test_videos", "videos_per_subject", "select_every", "chunks", "stream_epochs",
                 "lstm_epochs", "batch", "window", "k", "chunk_len"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.box[0] > args.size[0] or args.box[1] > args.size[1]:
        p.error(f"--box {args.box} must fit in --size {args.size}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    common.Distributed(args.device)  # one clear error when CUDA is asked for and absent
    start, last = time.perf_counter(), max(STAGES.index(s) for s in args.stages)
    root = stage_data(args)
    gt, classes, split = load_dataset(root)
    if last < 1:
        return {}
    vids, num_classes = [v for part in ("train", "val", "test") for v in split.get(part, [])], len(classes)
    motion = stage_motion(args, root, vids)
    labels = {v: chunk_labels(gt[v]["segments"], gt[v]["labels"], len(motion[v]["boxes"]), args.chunk_len,
                              inclusive_end=True) for v in vids}  # background 0, class c -> c + 1
    args.motion_key = fingerprint(root=root, files={v: os.path.getmtime(os.path.join(args.out, "motion", f"{v}.pt"))
                                                    for v in vids})
    if last < 2:
        return {}
    seed_dir = os.path.join(args.out, f"seed{args.seed}")
    needed = list(STREAMS) if args.ablations else list(FOUR_STREAMS)
    streams_out = stage_streams(args, motion, labels, split, num_classes, seed_dir, needed)
    args.streams_key = fingerprint(files={s: os.path.getmtime(os.path.join(seed_dir, "streams", f"{s}.pt")) for s in needed})
    if last < 3:
        return {}
    results, scores = stage_sequence(args, streams_out, labels, gt, split, num_classes, seed_dir)
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
