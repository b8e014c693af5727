"""Model families, registered by name where each is defined.

``get_arch(name, num_classes=..., in_channels=..., input_size=..., width_mult=..., **options)``
returns an :class:`Arch`: the family with its fixed settings, which gives the initial widths,
exact FLOPs of any widths, and builds the network for any widths. :func:`resize` carries a
trained network's weights to other widths, for every family, from the channel description the
families give while building (``channels.py``, ``resize.py``).
"""

# Each family module registers its architectures; `netadjust models` lists them in this order.
from . import cifar_resnet, imagenet_resnet, mobilenet, densenet, pyramidnet  # noqa: F401, I001
from .base import Arch, Layer
from .blocks import SegmentedNet
from .channels import Segment, Space
from .probes import ChannelDrop, Probes
from .registry import Option, all_options, family_options, get_arch, list_archs, options_of, register
from .resize import WIDEN, channel_importance, resize, top_channels

__all__ = ["Arch", "ChannelDrop", "Layer", "Option", "Probes", "Segment", "SegmentedNet", "Space", "all_options",
           "channel_importance", "family_options", "get_arch", "list_archs", "options_of", "register", "resize",
           "top_channels"]
