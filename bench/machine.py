"""What the benchmarks record of the machine they ran on."""

import os
import platform

import torch


def device_name() -> str:
    """The GPU's name, or the CPU's platform, cores and torch threads."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU: {platform.platform()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
