"""Configuration dataclasses shared by the CLI and the Python API.

``SearchConfig`` holds every knob of a search; its ``train`` member (a ``TrainConfig``) holds
the per-round training schedule. Defaults are the official code's CIFAR settings (see
DESIGN.md §2); the CLI's ``--preset demo`` (its default) shortens the schedule for the
embedded digits data. Each field is also a flag: ``field_name`` -> ``--field-name``.
:meth:`SearchConfig.validate` collects every problem and raises one :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, closest


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass
class TrainConfig:
    """One training run: SGD with momentum, cosine schedule, channel-dropout regulariser."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.15
    min_lr: float = 1e-3  # the cosine schedule ends here
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 3e-4
    warmup_epochs: int = 0  # linear warm-up from 0 to lr over these epochs
    label_smoothing: float = 0.0
    drop_rate: float = 0.05  # channel dropout during training, ramped over epochs, scaled by depth
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bfloat16 autocast, CUDA only
    channels_last: bool = True  # CUDA only
    compile: bool = False  # torch.compile the model

    def problems(self) -> list[str]:
        out = []
        for name in ("epochs", "batch_size"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                out.append(f"{flag(name)} must be a positive integer, got {getattr(self, name)!r}")
        if not _is_int(self.warmup_epochs) or not 0 <= self.warmup_epochs <= self.epochs:
            out.append(f"--warmup-epochs must be an integer in [0, --epochs={self.epochs}], got {self.warmup_epochs!r}")
        if not self.lr > 0:
            out.append(f"--lr must be > 0, got {self.lr!r}")
        if not 0 <= self.min_lr <= self.lr:
            out.append(f"--min-lr must be in [0, --lr={self.lr}], got {self.min_lr!r}")
        for name in ("momentum", "label_smoothing", "drop_rate"):
            if not 0 <= getattr(self, name) < 1:
                out.append(f"{flag(name)} must be in [0, 1), got {getattr(self, name)!r}")
        if not self.weight_decay >= 0:
            out.append(f"--weight-decay must be >= 0, got {self.weight_decay!r}")
        if not (self.device in ("auto", "cpu", "cuda", "mps") or str(self.device).startswith("cuda:")):
            out.append(f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        return out


FUR_MODES = ("fast", "reference")


@dataclass
class SearchConfig:
    """A whole search: architecture, data, method knobs, budget, schedule and outputs."""

    # architecture
    arch: str = "resnet20"
    width_mult: float = 1.0
    residual: str | None = None  # CIFAR ResNet only: "max" (default) or "local"
    alpha: float | None = None  # PyramidNet only: total width increase over the net (default 24)
    growth: int | None = None  # DenseNet only: growth rate of every layer (default 12)
    widths: str | None = None  # JSON file of starting widths (default: the family's)
    # data
    dataset: str = "digits"
    data_dir: str | None = None
    heldout_fraction: float = 0.1
    train_subset: int | None = None
    # method (official code's CIFAR defaults)
    rounds: int = 10
    k: int = 6
    k_decay: float = 0.5
    arch_lr: float = 0.15
    arch_lr_decay: float = 0.01
    min_width: int = 4
    base_drop_rate: float = 0.05
    repeats: int = 5
    fur_mode: str = "fast"
    fur_control_variate: bool = True  # fast mode: subtract the zero-mean first-order term
    fur_batch_size: int = 256
    # budget
    budget: float = 1.0  # target MACs as a fraction of the original network's
    tolerance: float = 0.01
    multiple_of: int = 1
    # final comparison
    final_epochs: int = 0  # 0: skip retraining searched and original widths
    # run
    seed: int = 0
    out: str = "runs/search"
    train: TrainConfig = field(default_factory=TrainConfig)

    def problems(self) -> list[str]:
        """Every problem found in the values alone (data- and arch-dependent checks come later)."""
        out = self.train.problems()
        for name in ("rounds", "repeats", "min_width", "multiple_of", "fur_batch_size"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                out.append(f"{flag(name)} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("k", "final_epochs", "seed"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                out.append(f"{flag(name)} must be a non-negative integer, got {getattr(self, name)!r}")
        for name in ("k_decay", "arch_lr", "arch_lr_decay"):
            if not getattr(self, name) >= 0:
                out.append(f"{flag(name)} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < self.base_drop_rate < 1:
            out.append(f"--base-drop-rate must be in (0, 1), got {self.base_drop_rate!r}")
        if not 0 < self.heldout_fraction < 1:
            out.append(f"--heldout-fraction must be in (0, 1): FUR needs a held-out split; got {self.heldout_fraction!r}")
        if not self.budget > 0:
            out.append(f"--budget must be a fraction of the original MACs > 0, got {self.budget!r}")
        if not 0 < self.tolerance < 1:
            out.append(f"--tolerance must be in (0, 1), got {self.tolerance!r}")
        if self.fur_mode not in FUR_MODES:
            out.append(f"--fur-mode must be one of {', '.join(FUR_MODES)}, got {self.fur_mode!r}")
        if self.train_subset is not None and (not _is_int(self.train_subset) or self.train_subset < 1):
            out.append(f"--train-subset must be a positive integer, got {self.train_subset!r}")
        return out

    def validate(self) -> SearchConfig:
        problems = self.problems()
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "configuration") -> SearchConfig:
        """Build from a mapping: search fields at the top, training fields at the top or under "train"."""
        return cls(**_split_fields(data, source))

    def replace(self, **changes: Any) -> SearchConfig:
        """A copy with search or training fields changed (flat names, as the flags)."""
        merged = {**flatten(self.to_dict()), **changes}
        return SearchConfig.from_dict(merged)


TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
SEARCH_FIELDS = tuple(f.name for f in dataclasses.fields(SearchConfig) if f.name != "train")


def flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """Search and training fields in one flat mapping (the shape of flags and config files)."""
    flat = {k: v for k, v in data.items() if k != "train"}
    flat.update(data.get("train") or {})
    return flat


def _split_fields(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    flat = flatten(data)
    unknown = [k for k in flat if k not in SEARCH_FIELDS and k not in TRAIN_FIELDS]
    if unknown:
        hints = "; ".join(f"unknown key {k!r}{closest(k, SEARCH_FIELDS + TRAIN_FIELDS)}" for k in unknown)
        raise ConfigError(f"{source}: {hints}")
    search = {k: v for k, v in flat.items() if k in SEARCH_FIELDS}
    search["train"] = TrainConfig(**{k: v for k, v in flat.items() if k in TRAIN_FIELDS})
    return search


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON or TOML (``.toml``) config file into a flat mapping of field values."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise ConfigError(f"config file {path}: TOML needs Python 3.11 or newer; use a .json file") from None
            data = tomllib.loads(raw.decode())
        else:
            data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        raise ConfigError(f"config file {path} is not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold an object of settings, got {type(data).__name__}")
    flat = flatten(data)
    _split_fields(flat, f"config file {path}")  # reject unknown keys now, naming the file
    return flat


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
