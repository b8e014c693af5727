"""Model families, registered by name.

``get_arch(name, num_classes=..., in_channels=..., input_size=..., width_mult=..., **options)``
returns an :class:`Arch`: the family with its fixed settings, which gives the initial widths,
exact FLOPs of any widths, and builds the network for any widths.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from ..errors import ConfigError, closest
from .base import Arch, Layer
from .blocks import ChannelDrop, SegmentedNet
from .cifar_resnet import CifarResNet

__all__ = ["Arch", "ChannelDrop", "Layer", "SegmentedNet", "family_options", "get_arch", "list_archs",
           "register"]

COMMON_SETTINGS = ("num_classes", "in_channels", "input_size", "width_mult")
_REGISTRY: dict[str, tuple[Callable[..., Arch], str, tuple[str, ...]]] = {}


def register(name: str, factory: Callable[..., Arch], description: str, options: Sequence[str] = ()) -> None:
    """Make ``factory(name=..., num_classes=..., ..., **options)`` available as ``get_arch(name, ...)``.

    ``options`` names the family-specific settings the factory takes beyond the common ones.
    """
    if name in _REGISTRY:
        raise ValueError(f"architecture {name!r} is registered twice")
    _REGISTRY[name] = (factory, description, tuple(options))


def family_options(source) -> dict:
    """The family-specific options (any registered family's) that ``source`` (a config or parsed
    flags) sets; ``get_arch`` refuses those the chosen family does not take."""
    names = dict.fromkeys(name for _, _, options in _REGISTRY.values() for name in options)
    return {k: getattr(source, k) for k in names if getattr(source, k, None) is not None}


def list_archs() -> dict[str, str]:
    """Registered architecture names and one-line descriptions."""
    return {name: desc for name, (_, desc, _) in _REGISTRY.items()}


def get_arch(name: str, **settings) -> Arch:
    """The architecture ``name`` with the given settings (num_classes, in_channels, ...)."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown architecture {name!r}{closest(name, _REGISTRY)}; "
                          f"known: {', '.join(_REGISTRY)} (see `netadjust models`)")
    factory, _, options = _REGISTRY[name]
    bad = [k for k in settings if k not in COMMON_SETTINGS and k not in options]
    if bad:
        raise ConfigError(f"{name} does not take option(s) {', '.join(bad)}; it takes "
                          f"{', '.join(COMMON_SETTINGS + options)}")
    return factory(name=name, **settings)


for _depth in (20, 32, 44, 56, 110):
    register(f"resnet{_depth}", partial(CifarResNet, depth=_depth),
             f"CIFAR ResNet-{_depth}, parameter-free shortcuts, {_depth - 2} searchable convs",
             options=("residual",))
for _depth in (20, 56):
    register(f"plain{_depth}", partial(CifarResNet, depth=_depth, plain=True),
             f"CIFAR Plain-{_depth}: ResNet-{_depth} without shortcuts")

from .densenet import DenseNet  # noqa: E402 - the families below register after the mechanism above
from .imagenet_resnet import ImageNetResNet  # noqa: E402
from .mobilenet import MobileNet  # noqa: E402
from .pyramidnet import PyramidNet  # noqa: E402

for _depth, _convs in ((18, 16), (34, 32)):
    register(f"resnet{_depth}", partial(ImageNetResNet, depth=_depth),
             f"ImageNet ResNet-{_depth}: basic blocks, 7x7 stem, {_convs} searchable 3x3 convs, "
             "projections follow conv2")
register("mobilenet_v2", partial(MobileNet, variant="mobilenet_v2"),
         "MobileNetV2: searchable expansion width per block and output width per stage")
register("mnasnet_a1", partial(MobileNet, variant="mnasnet_a1"),
         "MnasNet-A1: as mobilenet_v2, with squeeze-excite (squeeze = expansion // (4t))")
register("densenet40", partial(DenseNet, depth=40),
         "CIFAR DenseNet-40 (k=12, no bottleneck): searchable growth per layer", options=("growth",))
register("pyramidnet20", partial(PyramidNet, depth=20),
         "CIFAR PyramidNet-20 (alpha=24): basic blocks, searchable width per conv", options=("alpha",))
