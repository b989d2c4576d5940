"""How scalekit runs a detector it was handed: the adapters that turn a model
into a function of a batch of images (one pyramid level, slice or chip), and
the check of what that function returns.

Shared by :class:`scalekit.scale.Pyramid` and :func:`scalekit.slicing.sliced_detect`
(adapters registered by users with :func:`scalekit.scale.register_detector_adapter`,
then the known ones) and by :class:`scalekit.autofocus.AutoFocus` (its own known
adapter only: a focus detector returns more than detections).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["LevelDetector", "register_detector_adapter", "level_detector", "as_detections"]

LevelDetector = Callable[[list[Tensor]], list]
"""A list of ``[C, H, W]`` images -> per image, detections in that image's pixels."""

_ADAPTERS: list[Callable[[object], LevelDetector | None]] = []

# Detectors scalekit knows without being told, looked up by where their class is
# defined (any class in the detector's MRO): (module prefix, module of the adapter,
# its name). The adapter's module is imported only when such a detector arrives, so
# `import scalekit.scale` never imports torchvision.
KNOWN_ADAPTERS = (
    ("torchvision.models.detection.", "scalekit.detection.pyramid", "torchvision_adapter"),
)


def register_detector_adapter(adapter: Callable[[object], LevelDetector | None]):
    """Teach :meth:`~scalekit.scale.Pyramid.detect` a kind of detector.

    ``adapter(detector)`` returns ``None`` for detectors it does not know, else
    a function that takes a list of ``[C, H, W]`` images of one level and
    returns, per image, detections in that image's pixels (a dict with
    ``"boxes"``, ``"scores"``, ``"labels"``) — running the model so that each
    image reaches its backbone at the size given. An adapter for a detectron2
    or MMDetection model is a few lines. Adapters registered here are tried
    first, latest first; torchvision's detectors need none (``Pyramid`` finds
    :func:`scalekit.detection.torchvision_level_detector` by the model's
    class). Usable as a decorator.
    """
    if not callable(adapter):
        raise TypeError(f"adapter must be callable, got {type(adapter).__name__}")
    _ADAPTERS.append(adapter)
    return adapter


def _known_adapter(detector, known=KNOWN_ADAPTERS) -> LevelDetector | None:
    """The runner of the first ``(module prefix, adapter module, adapter name)`` in ``known``
    whose prefix names a class of ``detector`` (its MRO) and whose adapter accepts it;
    the adapter module is imported only then (no import side effect for other detectors)."""
    for cls in type(detector).__mro__:
        for prefix, module, name in known:
            if cls.__module__.startswith(prefix):
                runner = getattr(importlib.import_module(module), name)(detector)
                if runner is not None:
                    return runner
    return None


def level_detector(detector, known=KNOWN_ADAPTERS, registered: bool = True,
                   expected: str = "callable or a detection model scalekit knows") -> LevelDetector:
    """``detector`` as a :data:`LevelDetector`: the registered adapters first (latest first, unless
    ``registered`` is False), then the ``known`` ones, else a callable run one image at a time;
    anything else is a ``TypeError`` saying the detector must be ``expected``."""
    for adapter in reversed(_ADAPTERS if registered else ()):
        runner = adapter(detector)
        if runner is not None:
            return runner
    runner = _known_adapter(detector, known)
    if runner is not None:
        return runner
    if not callable(detector):
        raise TypeError(f"detector must be {expected}, got {type(detector).__name__}")
    return lambda images: [detector(image) for image in images]


def as_detections(out, where: str) -> dict:
    """A detector's output for one image as ``{"boxes" [N, 4], "scores" [N], "labels" [N]}``."""
    if isinstance(out, dict):
        missing = [k for k in ("boxes", "scores", "labels") if k not in out]
        if missing:
            raise TypeError(f"{where}: the detector returned a dict without {missing}; expected "
                            "{'boxes': [N, 4], 'scores': [N], 'labels': [N]} (torchvision's format)")
        boxes, scores, labels = out["boxes"], out["scores"], out["labels"]
    elif isinstance(out, (tuple, list)) and len(out) == 3:
        boxes, scores, labels = out
    else:
        raise TypeError(f"{where}: the detector must return (boxes [N, 4], scores [N], labels [N]) or a dict "
                        f"with those keys, got {type(out).__name__}")
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    scores, labels = torch.as_tensor(scores).reshape(-1), torch.as_tensor(labels).reshape(-1)
    if boxes.numel() == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.dim() != 2 or boxes.shape[1] != 4 or scores.shape[0] != boxes.shape[0] or labels.shape[0] != boxes.shape[0]:
        raise ValueError(f"{where}: boxes must be [N, 4] with N scores and N labels, got boxes "
                         f"{list(boxes.shape)}, scores {list(scores.shape)}, labels {list(labels.shape)}")
    bad = ~(torch.isfinite(boxes).all(1) & torch.isfinite(scores.float()))
    if bad.any():
        raise ValueError(f"{where}: the detector returned {int(bad.sum())} detection(s) with non-finite boxes or "
                         "scores; fix the detector (e.g. a diverged model) rather than let them be dropped")
    return {"boxes": boxes, "scores": scores, "labels": labels}
