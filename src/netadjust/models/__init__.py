"""Model families, registered by name where each is defined.

``get_arch(name, num_classes=..., in_channels=..., input_size=..., width_mult=..., **options)``
returns an :class:`Arch`: the family with its fixed settings, which gives the initial widths,
exact FLOPs of any widths, and builds the network for any widths.
"""

# Each family module registers its architectures; `netadjust models` lists them in this order.
from . import cifar_resnet, imagenet_resnet, mobilenet, densenet, pyramidnet  # noqa: F401, I001
from .base import Arch, Layer
from .blocks import SegmentedNet
from .probes import ChannelDrop, Probes
from .registry import Option, all_options, family_options, get_arch, list_archs, options_of, register

__all__ = ["Arch", "ChannelDrop", "Layer", "Option", "Probes", "SegmentedNet", "all_options", "family_options",
           "get_arch", "list_archs", "options_of", "register"]
