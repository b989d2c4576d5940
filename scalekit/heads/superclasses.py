"""Super-class discovery for R-FCN-3000 (thesis §4.4.2): K-means over the mean
deep feature of each class."""

from __future__ import annotations

import torch
from torch import Tensor

from scalekit.heads._common import check_int

__all__ = ["discover_superclasses", "class_mean_features"]


def _fill_empty(x: Tensor, assign: Tensor, centres: Tensor, k: int) -> Tensor:
    """Every cluster non-empty: an empty one takes the point farthest from its centre
    among clusters of two or more points (``k <= C`` makes that always possible)."""
    assign = assign.clone()
    counts = torch.bincount(assign, minlength=k)
    for j in (counts == 0).nonzero().flatten().tolist():
        distance = (x - centres[assign]).norm(dim=1)
        distance[counts[assign] < 2] = -1.0  # never empty another cluster
        far = int(distance.argmax())
        counts[assign[far]] -= 1
        assign[far], counts[j] = j, 1
        centres[j] = x[far]
    return assign


def _kmeans(x: Tensor, k: int, generator: torch.Generator, iters: int) -> tuple[Tensor, float]:
    c = x.shape[0]
    # k-means++ seeding
    centres = [x[torch.randint(c, (1,), generator=generator)].squeeze(0)]
    for _ in range(1, k):
        d = torch.cdist(x, torch.stack(centres)).min(1).values.square()
        total = d.sum()
        pick = torch.multinomial(d / total, 1, generator=generator) if total > 0 else torch.randint(c, (1,), generator=generator)
        centres.append(x[pick].squeeze(0))
    centres = torch.stack(centres)
    # the seeding's own assignment, then Lloyd iterations; duplicate points (or seeds) can leave a
    # cluster empty, and an empty cluster is re-seeded, so the result always has k clusters
    assign = _fill_empty(x, torch.cdist(x, centres).argmin(1), centres, k)
    for _ in range(iters):
        for j in range(k):
            centres[j] = x[assign == j].mean(0)
        new = _fill_empty(x, torch.cdist(x, centres).argmin(1), centres, k)
        if torch.equal(new, assign):
            break
        assign = new
    inertia = (x - centres[assign]).square().sum().item()
    return assign, inertia


def discover_superclasses(class_features: Tensor, k: int, seed: int = 0, *, n_init: int = 4, iters: int = 100) -> Tensor:
    """Group ``C`` classes into ``k`` super-classes by K-means on their mean features.

    The thesis averages the 2048-d ResNet-101 features of each class's images
    (:func:`class_mean_features`) and clusters them; classes of one super-class
    then share position-sensitive filters.

    Args:
        class_features: ``[C, D]`` one feature vector per class.
        k: number of super-classes, ``1 <= k <= C``; the result always has
            exactly ``k`` non-empty super-classes (an emptied cluster takes the
            class farthest from its centre, even among identical features).
        seed: seeds k-means++ initialisation; the result is deterministic.
        n_init: restarts (``>= 1``); the clustering of lowest inertia wins.
        iters: Lloyd iterations at most (``>= 0``); 0 keeps the k-means++
            seeding's assignment (each class to its nearest seed).

    Returns:
        ``[C]`` int64 super-class of each class, numbered in order of first
        appearance (class 0 is in super-class 0).

    Example:
        >>> import torch
        >>> from scalekit.heads import discover_superclasses
        >>> feats = torch.tensor([[0.0, 0.0], [0.1, 0.0], [10.0, 10.0], [10.0, 10.1], [0.0, 0.1]])
        >>> discover_superclasses(feats, k=2)
        tensor([0, 0, 1, 1, 0])
    """
    x = torch.as_tensor(class_features).detach().to(torch.float64).cpu()
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"class_features must have shape [C, D] with C, D >= 1, got {list(x.shape)}")
    k = check_int(k, "k", 1)
    if k > x.shape[0]:
        raise ValueError(f"k must lie in [1, C] = [1, {x.shape[0]}], got {k}")
    seed, n_init, iters = check_int(seed, "seed", 0), check_int(n_init, "n_init", 1), check_int(iters, "iters", 0)
    if not torch.isfinite(x).all():
        raise ValueError("class_features must be finite (a class without samples gives NaN means)")
    scale = x.abs().max()
    if scale > 0:  # k-means is scale-free; this keeps squared distances of huge or tiny features finite
        x = x / scale
    generator = torch.Generator().manual_seed(seed)
    best, best_inertia = None, float("inf")
    for _ in range(n_init):
        assign, inertia = _kmeans(x, k, generator, iters)
        if best is None or inertia < best_inertia - 1e-12:
            best, best_inertia = assign, inertia
    # canonical numbering: by first appearance
    order = {}
    for a in best.tolist():
        order.setdefault(a, len(order))
    return torch.tensor([order[a] for a in best.tolist()], dtype=torch.int64)


@torch.no_grad()
def class_mean_features(model, loader, num_classes: int, *, device=None, progress: bool = False) -> Tensor:
    """Mean feature of each class over a classification data loader.

    Args:
        model: maps a batch of images to ``[B, D]`` features (e.g. a ResNet
            without its classifier).
        loader: yields ``(images, labels)`` with ``labels`` ``[B]`` in ``[0, C)``.
        num_classes: ``C``.
        device: where to run ``model`` (default: where its parameters are).
        progress: print a line every 10% of the loader.

    Returns:
        ``[C, D]`` float32 means.

    Example:
        >>> import torch
        >>> from scalekit.heads import class_mean_features
        >>> loader = [(torch.tensor([[1.0, 0], [3, 0]]), torch.tensor([0, 0])), (torch.tensor([[0.0, 2]]), torch.tensor([1]))]
        >>> class_mean_features(torch.nn.Identity(), loader, num_classes=2)
        tensor([[2., 0.],
                [0., 2.]])
    """
    num_classes = check_int(num_classes, "num_classes", 1)
    if device is None:
        params = list(getattr(model, "parameters", lambda: [])())
        device = params[0].device if params else torch.device("cpu")
    sums = counts = None
    total = len(loader) if hasattr(loader, "__len__") else None
    for i, (images, labels) in enumerate(loader):
        feats = model(images.to(device)).float().flatten(1)
        labels = torch.as_tensor(labels, device=feats.device).long()
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"batch {i}: labels must lie in [0, {num_classes})")
        if sums is None:
            sums = feats.new_zeros(num_classes, feats.shape[1])
            counts = feats.new_zeros(num_classes)
        sums.index_add_(0, labels, feats)
        counts.index_add_(0, labels, torch.ones_like(labels, dtype=feats.dtype))
        if progress and total and (i + 1) % max(1, total // 10) == 0:
            print(f"class_mean_features: {i + 1}/{total} batches", flush=True)
    if sums is None:
        raise ValueError("loader yielded no batches")
    missing = (counts == 0).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"no samples for classes {missing[:10]}{'...' if len(missing) > 10 else ''}")
    return (sums / counts[:, None]).cpu()
