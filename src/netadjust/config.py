"""Configuration dataclasses shared by the CLI and the Python API.

``SearchConfig`` holds every knob of a search; its ``train`` member (a ``TrainConfig``) holds
the per-round training schedule, and ``arch_options`` the family-specific options (declared by
the families, models/registry.py). Defaults are the official code's CIFAR settings
(docs/method.md#official-defaults); presets (``PRESETS``) shorten the schedule for the embedded
digits data. Each field is also a flag, ``field_name`` -> ``--field-name``, with the help text
in its metadata; config files and ``config.json`` use the same flat names.

Values are checked twice: their types when read (:meth:`SearchConfig.from_dict`, one
:class:`ConfigError` naming every wrong key), and their ranges in :meth:`SearchConfig.validate`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .adjust import AdjustRule
from .errors import ConfigError, closest
from .io import read_document
from .models import WIDEN, all_options
from .schema import check_value, convert, field_types

MAX_SEED = 2**32 - 1
FUR_MODES = ("fast", "reference")
GUIDES = ("fur", "random")
COST_METRICS = ("macs", "latency")
DEVICES = "auto, cpu, cuda, cuda:N or mps"


def setting(default: Any, help: str) -> Any:
    """A dataclass field with its flag's help text."""
    return field(default=default, metadata={"help": help})


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass
class TrainConfig:
    """One training run: SGD with momentum, cosine schedule, channel-dropout regulariser."""

    epochs: int = setting(20, "training epochs (per search round)")
    batch_size: int = setting(128, "batch size (per process under torchrun)")
    lr: float = setting(0.15, "peak learning rate")
    min_lr: float = setting(1e-3, "learning rate at the end of the cosine schedule")
    momentum: float = setting(0.9, "SGD momentum")
    nesterov: bool = setting(False, "Nesterov momentum")
    weight_decay: float = setting(3e-4, "weight decay")
    warmup_epochs: int = setting(0, "linear warm-up from 0 to --lr over these epochs")
    label_smoothing: float = setting(0.0, "label smoothing of the training loss")
    drop_rate: float = setting(0.05, "channel dropout while training (ramped over epochs, scaled by depth)")
    device: str = setting("auto", f"{DEVICES} (auto: CUDA when present)")
    amp: bool = setting(True, "bfloat16 autocast on CUDA")
    channels_last: bool = setting(True, "channels-last memory format on CUDA")
    compile: bool = setting(False, "torch.compile the model")
    cuda_graphs: bool = setting(True, "CUDA, one process: replay each training step from a CUDA graph with no host "
                                      "synchronisation within an epoch (off: the eager path)")

    def problems(self) -> list[str]:
        out = []
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                out.append(f"{flag(name)} must be a positive integer, got {getattr(self, name)!r}")
        if not 0 <= self.warmup_epochs <= self.epochs:
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
        device = self.device
        if not (device in ("auto", "cpu", "cuda", "mps") or (device.startswith("cuda:") and device[5:].isdigit())):
            out.append(f"--device must be one of {DEVICES}, got {device!r}")
        return out


@dataclass
class SearchConfig:
    """A whole search: architecture, data, method knobs, budget, schedule and outputs."""

    # architecture
    arch: str = setting("resnet20", "model family (see `netadjust models`), or torchvision:NAME, timm:NAME, "
                                  "package.module:factory")
    width_mult: float = setting(1.0, "width multiplier of the family's initial widths")
    widths: str | None = setting(None, "JSON file of starting widths (default: the family's)")
    # data
    dataset: str = setting("digits", "data set")  # the CLI lists the data sets in its help
    data_dir: str | None = setting(None, "where the data set's files are (needed for cifar and imagefolder)")
    heldout_fraction: float = setting(0.1, "share of the training set kept for FUR estimation")
    train_subset: int | None = setting(None, "keep only the first N training images (default: all)")
    # method (official code's CIFAR defaults; the adjustment rule's are its own)
    rounds: int = setting(10, "search rounds T")
    k: int = setting(AdjustRule.k, "layers widened (and narrowed) per round")
    k_decay: float = setting(AdjustRule.k_decay, "k shrinks by this per round")
    arch_lr: float = setting(AdjustRule.arch_lr, "relative width step of the most extreme layer")
    arch_lr_decay: float = setting(AdjustRule.arch_lr_decay, "the step shrinks by this per rank")
    min_width: int = setting(AdjustRule.min_width, "narrowing stops here")
    base_drop_rate: float = setting(0.05, "channel-dropout rate of an average layer for FUR")
    repeats: int = setting(5, "dropout passes per layer for FUR")
    fur_mode: str = setting("fast", "fast or reference (the official scheme)")
    fur_control_variate: bool = setting(True, "fast FUR mode: subtract the zero-mean first-order loss change")
    fur_batch_size: int = setting(256, "held-out batch size for FUR")
    guide: str = setting("fur", "what ranks the layers to widen and narrow: fur, or random (a control)")
    warm_start: bool | None = setting(None, "rounds after the first start from the previous round's trained "
                                             "network, resized to the new widths, and train --warm-epochs (default: "
                                             "on for netadjust's families; off, every round from scratch as in the "
                                             "paper, for models given as torchvision:, timm: or module:factory)")
    warm_epochs: int | None = setting(None, "epochs of a warm-started round, with their own cosine schedule "
                                            "(default: a quarter of --epochs, at least 1)")
    warm_widen: str = setting("split", "how a warm-started round's new channels start: split (copies of kept "
                                       "channels sharing their outgoing weights, Net2Net) or zero (zero outgoing "
                                       "weights)")
    # budget
    budget: float = setting(1.0, "target MACs as a fraction of the original network's")
    tolerance: float = setting(0.01, "allowed relative MACs error of the restore")
    multiple_of: int = setting(1, "round widths to multiples of this")
    budget_metric: str = setting("macs", "what --budget holds: macs, or latency (measured on --latency-device, "
                                         "predicted from a lookup table)")
    latency_device: str | None = setting(None, "where latency is measured: cpu, cuda, cuda:N (default: the "
                                               "training device)")
    latency_batch: int = setting(1, "batch size of the latency measurements")
    fur_cost: str = setting("macs", "what FUR's drop rates equalise: macs (the paper's), or latency")
    # final comparison
    final_epochs: int = setting(0, "retrain original and searched widths this long and compare (0: skip)")
    final_seeds: int = setting(1, "final comparison: train both widths with seeds --seed .. --seed + N - 1")
    distill_from: str | None = setting(None, "final comparison: train the searched widths with soft targets from "
                                             "a teacher: original (the trained original network of the same seed) "
                                             "or a weights file (final/*.weights.pt, a checkpoint.pt of netadjust "
                                             "train, a state-dict export)")
    distill_alpha: float = setting(0.5, "distillation: weight of the soft-target loss (the labels get 1 - alpha)")
    distill_temperature: float = setting(4.0, "distillation: softmax temperature of teacher and student")
    # run
    seed: int = setting(0, "seed of split, init, augmentation and dropout")
    out: str = setting("runs/search", "output (run) directory")
    train: TrainConfig = field(default_factory=TrainConfig)
    arch_options: dict[str, Any] = field(default_factory=dict)  # family-specific, e.g. {"residual": "local"}

    def problems(self) -> list[str]:
        """Every problem found in the values alone (data- and arch-dependent checks come later)."""
        out = self.train.problems()
        for name in ("rounds", "repeats", "min_width", "multiple_of", "fur_batch_size", "final_seeds"):
            if getattr(self, name) < 1:
                out.append(f"{flag(name)} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("k", "final_epochs"):
            if getattr(self, name) < 0:
                out.append(f"{flag(name)} must be a non-negative integer, got {getattr(self, name)!r}")
        if not 0 <= self.seed <= MAX_SEED - self.final_seeds:
            out.append(f"--seed must be an integer in [0, {MAX_SEED - self.final_seeds}], got {self.seed!r}")
        if not 0 < self.width_mult:
            out.append(f"--width-mult must be > 0, got {self.width_mult!r}")
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
        if self.guide not in GUIDES:
            out.append(f"--guide must be one of {', '.join(GUIDES)}, got {self.guide!r}")
        for name in ("budget_metric", "fur_cost"):
            if getattr(self, name) not in COST_METRICS:
                out.append(f"{flag(name)} must be one of {', '.join(COST_METRICS)}, got {getattr(self, name)!r}")
        if self.latency_batch < 1:
            out.append(f"--latency-batch must be a positive integer, got {self.latency_batch!r}")
        if self.fur_mode not in FUR_MODES:
            out.append(f"--fur-mode must be one of {', '.join(FUR_MODES)}, got {self.fur_mode!r}")
        if self.warm_widen not in WIDEN:
            out.append(f"--warm-widen must be one of {', '.join(WIDEN)}, got {self.warm_widen!r}")
        if self.warm_epochs is not None and self.warm_epochs < 1:
            out.append(f"--warm-epochs must be a positive integer, got {self.warm_epochs!r}")
        if not 0 <= self.distill_alpha <= 1:
            out.append(f"--distill-alpha must be in [0, 1], got {self.distill_alpha!r}")
        if not 0 < self.distill_temperature < math.inf:
            out.append(f"--distill-temperature must be a finite number > 0, got {self.distill_temperature!r}")
        if self.distill_from is not None and self.final_epochs == 0:
            out.append("--distill-from applies to the final comparison: set --final-epochs above 0")
        if self.train_subset is not None and self.train_subset < 1:
            out.append(f"--train-subset must be a positive integer, got {self.train_subset!r}")
        return out

    def validate(self) -> SearchConfig:
        problems = _type_problems(self) + _type_problems(self.train)
        problems = problems or self.problems()  # ranges only make sense on the right types
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))
        return self

    def warm_epochs_or_default(self) -> int:
        """Epochs of a warm-started round: ``warm_epochs``, or a quarter of ``epochs`` (at least 1)."""
        return self.warm_epochs if self.warm_epochs is not None else max(1, self.train.epochs // 4)

    def rule(self) -> AdjustRule:
        """The adjustment rule these settings describe."""
        return AdjustRule(**{f.name: getattr(self, f.name) for f in dataclasses.fields(AdjustRule)})

    def to_flat(self) -> dict[str, Any]:
        """Every setting under its flat name, as in config files and ``config.json``."""
        flat = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("train", "arch_options")}
        flat.update(dataclasses.asdict(self.train))
        flat.update({name: self.arch_options.get(name) for name in all_options()})
        return flat

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "configuration") -> SearchConfig:
        """Build from a flat mapping (training fields may also sit under "train"); every key and
        every value's type is checked, and all problems are reported in one ConfigError."""
        flat = flatten(data, source)
        options = all_options()
        problems = [f"unknown key {k!r}{closest(str(k), (*SEARCH_FIELDS, *TRAIN_FIELDS, *options))}"
                    for k in flat if k not in SEARCH_FIELDS and k not in TRAIN_FIELDS and k not in options]
        for types, fields in ((field_types(cls), SEARCH_FIELDS), (field_types(TrainConfig), TRAIN_FIELDS)):
            problems += [p for k in fields if k in flat and (p := check_value(k, flat[k], types[k]))]
        problems += [p for k, o in options.items() if flat.get(k) is not None and (p := o.problem(flat[k]))]
        if problems:
            raise ConfigError(f"{source}: " + "; ".join(problems))
        search_types, train_types = field_types(cls), field_types(TrainConfig)  # convert: 1 -> 1.0 for floats
        train = TrainConfig(**{k: convert(v, train_types[k]) for k, v in flat.items() if k in TRAIN_FIELDS})
        values = {k: convert(v, search_types[k]) for k, v in flat.items() if k in SEARCH_FIELDS}
        arch_options = {k: options[k].type(v) for k, v in flat.items() if k in options and v is not None}
        return cls(**values, train=train, arch_options=arch_options)

    def replace(self, **changes: Any) -> SearchConfig:
        """A copy with search, training or family-option fields changed (flat names, as the flags)."""
        return SearchConfig.from_dict({**self.to_flat(), **changes})


TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
SEARCH_FIELDS = tuple(f.name for f in dataclasses.fields(SearchConfig) if f.name not in ("train", "arch_options"))

# Groups of settings under one name (--preset); a preset sits between the defaults and a config file.
PRESETS: dict[str, dict[str, Any]] = {
    # A complete small search on the embedded digits data: a few minutes on 2 CPU cores.
    "demo": {"dataset": "digits", "rounds": 5, "epochs": 10, "final_epochs": 20, "out": "runs/demo"},
    # The official code's CIFAR protocol (docs/method.md#official-defaults): the defaults with every round
    # trained from scratch, plus 200 final epochs.
    "paper": {"final_epochs": 200, "warm_start": False},
}


def _type_problems(obj: Any) -> list[str]:
    types = field_types(type(obj))
    return [p for name, tp in types.items() if name not in ("train", "arch_options")
            and (p := _check_setting(name, getattr(obj, name), tp))]


def _check_setting(name: str, value: Any, tp: Any) -> str | None:
    problem = check_value(flag(name), value, tp)
    if problem is None and isinstance(value, float) and not math.isfinite(value):
        problem = f"{flag(name)} must be a finite number, got {value!r}"
    return problem


def flatten(data: Mapping[str, Any], source: str = "configuration") -> dict[str, Any]:
    """Search and training fields in one flat mapping (the shape of flags and config files)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source} must be an object of settings, got {type(data).__name__}")
    train = data.get("train") or {}
    if not isinstance(train, Mapping):
        raise ConfigError(f"{source}: 'train' must be a table of training settings (epochs, lr, ...), "
                          f"got {train!r}")
    return {**{k: v for k, v in data.items() if k != "train"}, **train}


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON or TOML (``.toml``) config file into a flat mapping of checked values."""
    where = f"config file {path}"
    flat = flatten(read_document(path, "config file", ConfigError), where)
    SearchConfig.from_dict(flat, source=where)  # reject unknown keys and wrong types now, naming the file
    return flat
