"""Why do R-FCN-3000's super-classes follow colour rather than the shape families (thesis §4.4.2)?

K-means (:func:`scalekit.heads.discover_superclasses`, K = the number of families) on class-mean
features of the classification network of ``train.py``'s step 1, and how well the clusters agree
(adjusted Rand index, :func:`scalekit.evaluation.adjusted_rand_index`) with the families (shape)
and with each class' colour, for:

* the network as ``train.py`` trains it (``--cls-epochs``, 6) and trained longer (``--long-epochs``):
  if undertraining made the features colour-dominated, the longer-trained features should move
  towards the families;
* the same networks' features of grey-scale crops (colour removed at the input): if the features
  carry shape at all, the clusters of grey crops should follow the families;
* the crops' own pixels (class-mean 8 x 8 thumbnails, colour and grey): what the data alone groups.

Writes ``OUT/superclasses.json`` (``--json``: a copy). Same data and flags as ``train.py``.

    python examples/rfcn3000/superclass_diagnosis.py --out runs/rfcn3000_superclasses --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import common  # noqa: E402
import rfcn3000_data as data_lib  # noqa: E402

from scalekit.evaluation import adjusted_rand_index  # noqa: E402
from scalekit.heads import class_mean_features, discover_superclasses  # noqa: E402


def grey(x: torch.Tensor) -> torch.Tensor:
    """``[N, 3, S, S]`` -> the same images in grey (luma), three equal channels."""
    g = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    return g.expand(-1, 3, -1, -1)


def agreement(features: torch.Tensor, labels: dict, k: int, seed: int) -> dict:
    found = discover_superclasses(features, k, seed=seed).numpy()
    return {name: adjusted_rand_index(found, lab) for name, lab in labels.items()}


def diagnose(args, seed: int) -> dict:
    train = common.import_script(os.path.join(HERE, "train.py"), "rfcn3000_train")
    targs = train.parse_args(["--out", args.out, "--seed", str(seed), *args.extra])
    targs.dist = common.Distributed("cpu")
    common.seed_everything(seed)
    data = data_lib.load_data(targs)
    known = data["known"]
    cats = {c["id"]: c for c in data["val"].coco.dataset["categories"]}
    labels = {attr: np.unique([cats[c][attr] for c in known], return_inverse=True)[1]
              for attr in ("family", "colour", "texture")}
    k = int(labels["family"].max()) + 1
    images, crop_cats = data["crops"]
    index = {c: i for i, c in enumerate(known)}
    keep = torch.tensor([int(c) in index for c in crop_cats.tolist()])
    x = images[keep].float() / 255
    y = torch.tensor([index[int(c)] for c in crop_cats[keep].tolist()])
    out = {}
    for name, x_in in (("colour", x), ("grey", grey(x))):  # the data alone: class-mean thumbnails
        thumbs = F.adaptive_avg_pool2d(x_in, 8).flatten(1)
        mean = torch.zeros(len(known), thumbs.shape[1]).index_add_(0, y, thumbs) / torch.bincount(y)[:, None]
        out[f"pixels_{name}"] = agreement(mean, labels, k, seed)
    for epochs in (targs.cls_epochs, args.long_epochs):
        targs.cls_epochs = epochs
        net, crops, accuracy = data_lib.train_classifier(targs, data, "cpu")
        for name, x_in in (("colour", x), ("grey", grey(x))):
            loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_in, y), batch_size=256)
            feats = class_mean_features(net.features, loader, len(known), device="cpu")
            out[f"classifier_{epochs}ep_{name}"] = {**agreement(feats, labels, k, seed), "train_accuracy": accuracy}
    for key, r in out.items():
        print(f"seed {seed} {key:<24} ARI vs family {r['family']:+.3f}, colour {r['colour']:+.3f}, "
              f"texture {r['texture']:+.3f}" + (f" (train accuracy {r['train_accuracy']:.2f})"
                                                 if "train_accuracy" in r else ""), flush=True)
    return out


def main(argv=None) -> dict:
    argv, extra = common.split_passthrough(list(sys.argv[1:] if argv is None else argv))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/rfcn3000_superclasses")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--long-epochs", type=int, default=30, help="the longer classifier training (default: %(default)s)")
    p.add_argument("--json", help="also write the JSON here")
    args = p.parse_args(argv)
    args.extra = extra
    os.makedirs(args.out, exist_ok=True)
    result = {"seeds": args.seeds, "per_seed": {str(s): diagnose(args, s) for s in args.seeds}}
    keys = result["per_seed"][str(args.seeds[0])]
    result["summary"] = {key: {m: common.seed_stat([result["per_seed"][str(s)][key][m] for s in args.seeds])
                               for m in keys[key]} for key in keys}
    for path in filter(None, (os.path.join(args.out, "superclasses.json"), args.json)):
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
