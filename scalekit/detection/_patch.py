"""Give a live torchvision module extra behaviour without rebuilding it: its
class is swapped for a subclass that mixes ours in (as
``torch.nn.utils.parametrize`` does), so parameters, buffers, state-dict keys
and every setting stay exactly as they were."""

from __future__ import annotations

from torch import nn

_CLASSES: dict[tuple[type, type], type] = {}


def mix_in(module: nn.Module, mixin: type) -> nn.Module:
    """Make ``module`` an instance of ``mixin`` + its own class (idempotent)."""
    cls = type(module)
    if isinstance(module, mixin):
        return module
    key = (mixin, cls)
    if key not in _CLASSES:
        _CLASSES[key] = type(f"{mixin.__name__.lstrip('_')}{cls.__name__}", (mixin, cls), {})
    module.__class__ = _CLASSES[key]
    return module
