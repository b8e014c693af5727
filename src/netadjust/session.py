"""Setting up a job: data, architecture, starting widths, device, distributed environment and
run directory, all checked before the first epoch, so that a bad flag fails in seconds and
leaves nothing behind.

``netadjust search`` and ``netadjust train`` (and the Python API behind them) both start with
:func:`open_session` and :func:`open_run`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
import torch

from .config import SearchConfig
from .data import DataSource, load_dataset
from .dist import DistEnv, broadcast_object, init_distributed, pick_device
from .errors import ConfigError, DataError, NetadjustError
from .models import Arch, get_arch
from .records import RoundRecord
from .rundir import RunDir
from .train import check_batch_size
from .widths import Widths, load_widths

log = logging.getLogger(__name__)


@dataclass
class Session:
    """What a job needs, checked before any training."""

    cfg: SearchConfig
    data: DataSource
    arch: Arch
    widths: Widths  # the --widths file's, or the family's initial widths
    device: torch.device
    env: DistEnv


def open_session(cfg: SearchConfig, *, need_heldout: bool = False) -> Session:
    """Validate ``cfg``, pick the device, join torchrun's process group and load the data."""
    cfg.validate()
    RunDir(cfg.out).check_usable()
    device = pick_device(cfg.train.device)
    env = init_distributed(device)
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, heldout_fraction=cfg.heldout_fraction,
                        seed=cfg.seed, train_subset=cfg.train_subset)
    if need_heldout and data.size("heldout") == 0:
        raise DataError(f"the held-out split of {cfg.dataset} is empty: FUR is estimated on it; "
                        f"raise --heldout-fraction or --train-subset")
    check_batch_size(data, "train", cfg.train.batch_size, env.world_size)
    arch = get_arch(cfg.arch, num_classes=data.num_classes, in_channels=data.in_channels, input_size=data.input_size,
                    width_mult=cfg.width_mult, **cfg.arch_options)
    widths = arch.validate(load_widths(cfg.widths)) if cfg.widths else arch.default_widths()
    return Session(cfg, data, arch, widths, device, env)


def open_run(session: Session, *, resume: bool = False, overwrite: bool = False,
             allow_changes: bool = False) -> tuple[RunDir, list[RoundRecord]]:
    """The run directory of ``session.cfg.out``, ready to write, and the rounds it holds.

    - new directory (missing or empty): used as is;
    - ``overwrite``: an existing run is deleted first (only a run: see :meth:`RunDir.remove`);
    - ``resume``: continued; its stored settings must equal ``cfg`` unless ``allow_changes``;
    - otherwise an existing directory is an error.

    Rank 0 decides; the other ranks fail with its error instead of waiting for it.
    """
    cfg, env = session.cfg, session.env
    outcome: list[RoundRecord] | NetadjustError | None
    try:
        outcome = _open(cfg, resume, overwrite, allow_changes) if env.is_main else None
    except NetadjustError as exc:
        outcome = exc
    outcome = broadcast_object(outcome)  # rank 0's records, or its error
    if isinstance(outcome, NetadjustError):
        raise outcome
    run = RunDir(cfg.out)
    if env.is_main:
        run.write_json(run.config, cfg.to_flat())
    return run, outcome


def _open(cfg: SearchConfig, resume: bool, overwrite: bool, allow_changes: bool) -> list[RoundRecord]:
    run = RunDir(cfg.out)
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other: --resume continues the run, "
                          "--overwrite deletes it; pass one of them")
    if not run.exists():
        if resume:
            raise ConfigError(f"nothing to resume: {run.path} does not exist or is empty")
        return []
    if overwrite:
        removed = run.remove()
        log.warning("--overwrite: deleted %s (%d files: %s)", run.path, len(removed),
                    ", ".join(removed[:6]) + (", ..." if len(removed) > 6 else ""))
        return []
    if not resume:
        raise ConfigError(f"{run.path} already exists; pass --resume to continue it, --overwrite to replace it, "
                          f"or choose another --out")
    stored = run.read_config()
    mine = cfg.to_flat()
    # `out` may differ: a run directory can be moved. A setting newer than the run is at its default.
    defaults = SearchConfig().to_flat()
    changed = [f"{k} (stored {stored.get(k)!r}, now {v!r})" for k, v in mine.items()
               if stored.get(k, defaults.get(k)) != v and k != "out"]
    if changed and not allow_changes:
        raise ConfigError(f"cannot resume {run.path} with a different configuration: {'; '.join(changed)}; "
                          f"pass --allow-changes if that is intended")
    if changed:
        log.warning("resuming %s with changed settings: %s", run.path, "; ".join(changed))
    run.clean_temporary()
    records = run.read_records()
    if len(records) > cfg.rounds:
        raise ConfigError(f"{run.path} already holds {len(records)} rounds, more than --rounds {cfg.rounds}; "
                          f"resume with --rounds {len(records)} or more")
    return records
