"""netadjust: channel-width search for CNNs guided by the FLOPs Utilization Ratio.

Implements Network Adjustment (Chen et al., CVPR 2020, arXiv 2004.02767).
"""

__version__ = "0.1.0"

from .config import SearchConfig, TrainConfig  # noqa: E402
from .errors import ConfigError, DataError, NetadjustError, TrainingError, WidthsError  # noqa: E402
from .models import get_arch, list_archs  # noqa: E402
from .search import SearchResult, search  # noqa: E402
from .widths import load_widths, save_widths, validate_widths  # noqa: E402

__all__ = ["ConfigError", "DataError", "NetadjustError", "SearchConfig", "SearchResult", "TrainConfig",
           "TrainingError", "WidthsError", "get_arch", "list_archs", "load_widths", "save_widths", "search",
           "validate_widths"]
