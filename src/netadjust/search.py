"""The search loop: train -> FUR -> adjust -> restore the budget, for T rounds; then compare.

``search(SearchConfig(...))`` runs a whole search into a run directory (see rundir.py) and
returns a :class:`SearchResult`. Every check that needs no training (architecture, data, the
budget, ``k``) runs before the first epoch, so a bad flag fails in seconds.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .adjust import AdjustRule, adjust_widths
from .budget import fit_budget, within
from .config import SearchConfig, flatten
from .data import DataSource, load_dataset
from .dist import DistEnv, broadcast_object, init_distributed, pick_device
from .errors import ConfigError, DataError
from .fur import estimate_fur
from .io import save_torch_atomic
from .models import Arch, family_options, get_arch
from .rundir import RunDir
from .train import build_and_train, check_batch_size
from .widths import load_widths

log = logging.getLogger(__name__)


@dataclass
class SearchResult:
    run_dir: Path
    records: list[dict[str, Any]]
    widths_original: dict[str, int]  # the starting widths, at the budget
    widths_final: dict[str, int]
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class Setup:
    """What a search needs, checked before any training."""

    cfg: SearchConfig
    data: DataSource
    arch: Arch
    widths_original: dict[str, int]
    target_macs: float
    rule: AdjustRule
    device: torch.device
    env: DistEnv


def load_data(cfg: SearchConfig) -> DataSource:
    """The data set ``cfg`` names, with its held-out split."""
    return load_dataset(cfg.dataset, data_dir=cfg.data_dir, heldout_fraction=cfg.heldout_fraction,
                        seed=cfg.seed, train_subset=cfg.train_subset)


def arch_for(cfg: SearchConfig, data: DataSource) -> Arch:
    """The architecture ``cfg`` names, shaped for ``data`` (classes, channels, image size)."""
    return get_arch(cfg.arch, num_classes=data.num_classes, in_channels=data.in_channels,
                    input_size=data.input_size, width_mult=cfg.width_mult, **family_options(cfg))


def start_widths(cfg: SearchConfig, arch: Arch) -> dict[str, int]:
    """The widths file ``cfg`` names, validated, or the family's initial widths."""
    return arch.validate(load_widths(cfg.widths)) if cfg.widths else arch.default_widths()


def prepare(cfg: SearchConfig) -> Setup:
    """Validate everything that can be checked without training; load the data."""
    cfg.validate()
    device = pick_device(cfg.train.device)
    env = init_distributed(device)
    data = load_data(cfg)
    if data.size("heldout") == 0:
        raise DataError(f"the held-out split of {cfg.dataset} is empty: FUR is estimated on it; "
                        f"raise --heldout-fraction or --train-subset")
    check_batch_size(data, "train", cfg.train.batch_size, env.world_size)
    arch = arch_for(cfg, data)
    rule = AdjustRule(cfg.k, cfg.k_decay, cfg.arch_lr, cfg.arch_lr_decay, cfg.min_width)
    rule.check(len(arch.keys()))
    start = start_widths(cfg, arch)
    target = cfg.budget * arch.macs(arch.default_widths())
    original = fit_budget(arch, start, target, tolerance=cfg.tolerance, multiple_of=cfg.multiple_of,
                          min_width=min(cfg.min_width, *start.values()))
    return Setup(cfg, data, arch, original, target, rule, device, env)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _open_run(cfg: SearchConfig, resume: bool, overwrite: bool, allow_changes: bool) -> tuple[RunDir, list[dict[str, Any]]]:
    run = RunDir(cfg.out)
    if not run.exists():
        if resume:
            raise ConfigError(f"nothing to resume: {run.path} does not exist or is empty")
        return run, []
    if overwrite:
        import shutil

        shutil.rmtree(run.path)
        return run, []
    if not resume:
        raise ConfigError(f"run directory {run.path} already exists; pass --resume to continue it, "
                          f"--overwrite to replace it, or choose another --out")
    stored = flatten(run.read_json(run.config))
    mine = flatten(cfg.to_dict())
    # `out` may differ: a run directory can be moved.
    changed = [f"{k} (stored {stored.get(k)!r}, now {v!r})" for k, v in mine.items()
               if stored.get(k) != v and k != "out"]
    if changed and not allow_changes:
        raise ConfigError(f"cannot resume {run.path} with a different configuration: {'; '.join(changed)}; "
                          f"pass --allow-changes if that is intended")
    if changed:
        log.warning("resuming %s with changed settings: %s", run.path, "; ".join(changed))
    return run, run.read_records()


def _trainer_state(run: RunDir, path: Path, env: DistEnv, **meta: Any) -> dict[str, Any]:
    """``build_and_train`` arguments that save after every epoch to ``path`` and resume from it."""
    def save(state: dict[str, Any]) -> None:
        if env.is_main:
            save_torch_atomic(path, {**meta, **state})

    return {"checkpoint": save, "resume": run.training_state(path, meta)}


def search(cfg: SearchConfig, *, resume: bool = False, overwrite: bool = False, allow_changes: bool = False,
           progress: bool = True) -> SearchResult:
    """Run (or resume) a whole search; see the module docstring and README for the outputs.

    ``resume=True`` continues the run in ``cfg.out`` from its last completed epoch; its stored
    configuration must equal ``cfg`` unless ``allow_changes``.
    """
    setup = prepare(cfg)
    env, arch, data = setup.env, setup.arch, setup.data
    run, records = RunDir(cfg.out), []
    opened: Any = None
    if env.is_main:
        try:
            run, records = _open_run(cfg, resume, overwrite, allow_changes)
            opened = records
        except ConfigError as exc:
            opened = exc
    opened = broadcast_object(opened)  # other ranks fail with rank 0's error instead of waiting
    if isinstance(opened, ConfigError):
        raise opened
    records = opened
    if env.is_main:
        run.write_json(run.config, flatten(cfg.to_dict()))
    widths = records[-1]["next_widths"] if records else setup.widths_original
    log.info("search: %s on %s, %d searchable layers, target %.3fM MACs, %d rounds%s", arch.name, data.name,
             len(widths), setup.target_macs / 1e6, cfg.rounds,
             f" (resuming after round {len(records)})" if records else "")
    started, first = time.perf_counter(), len(records)
    for t in range(first, cfg.rounds):
        round_start = time.perf_counter()
        trained = build_and_train(arch, widths, data, cfg.train, seed=cfg.seed, device=setup.device, env=env,
                                  progress=progress, desc=f"round {t + 1}/{cfg.rounds}",
                                  **_trainer_state(run, run.current, env, round=t, widths=widths))
        train_seconds = time.perf_counter() - round_start
        if env.is_main:
            run.save_checkpoint(t, {"round": t, "widths": widths, "arch": arch.settings(),
                                    "config": flatten(cfg.to_dict()), "model": trained.model.state_dict()})
        # Every rank probes its share of the layers and ends with the whole FUR vector.
        fur = estimate_fur(trained.model, data, arch, widths, base_drop_rate=cfg.base_drop_rate,
                           repeats=cfg.repeats, batch_size=cfg.fur_batch_size, mode=cfg.fur_mode,
                           control_variate=cfg.fur_control_variate, device=setup.device, seed=cfg.seed + t,
                           env=env, progress=progress and env.is_main)
        adjusted, moves = adjust_widths(widths, setup.widths_original, fur.fur, setup.rule, t)
        next_widths = fit_budget(arch, adjusted, setup.target_macs, tolerance=cfg.tolerance,
                                 multiple_of=cfg.multiple_of, min_width=min(cfg.min_width, *adjusted.values()))
        if broadcast_object(next_widths) != next_widths:
            raise RuntimeError(f"rank {env.rank} computed other widths than rank 0 in round {t}")
        macs = arch.macs(widths)
        record = {
            "round": t, "widths": widths, "macs": macs, "params": arch.params(widths),
            "heldout_acc": trained.metrics["heldout"].top1, "heldout_loss": trained.metrics["heldout"].loss,
            "test_acc": trained.metrics["test"].top1, "test_loss": trained.metrics["test"].loss,
            "fur": fur.fur, "fur_stderr": fur.stderr, "drop_rate": fur.drop_rate, "drop_rate_clipped": fur.clipped,
            "fur_base_loss": fur.base_loss, "moves": moves, "next_widths": next_widths,
            "next_macs": arch.macs(next_widths), "train_seconds": train_seconds, "fur_seconds": fur.seconds,
            "seconds": time.perf_counter() - round_start, "history": trained.history,
        }
        if env.is_main:
            run.append_record(record)
            run.current.unlink(missing_ok=True)
        records.append(record)
        # Remaining rounds at this pace, plus two final trainings of final_epochs each.
        per_round = (time.perf_counter() - started) / (t + 1 - first)
        eta = per_round * (cfg.rounds - t - 1) + 2 * train_seconds * cfg.final_epochs / cfg.train.epochs
        widened = sum(1 for d in moves.values() if d > 0)
        log.info("round %2d/%d  MACs %8.3fM  held-out %6.2f%%  test %6.2f%%  train %6.1fs  FUR %5.1fs  "
                 "widened %d narrowed %d  next MACs %8.3fM  ETA %s", t + 1, cfg.rounds, macs / 1e6,
                 100 * record["heldout_acc"], 100 * record["test_acc"], train_seconds, fur.seconds, widened,
                 len(moves) - widened, record["next_macs"] / 1e6, _hms(eta))
        widths = next_widths
    final = widths
    summary: dict[str, Any] = {
        "arch": arch.settings(), "dataset": data.name, "rounds": cfg.rounds,
        "macs_original": arch.macs(setup.widths_original), "macs_final": arch.macs(final),
        "macs_target": setup.target_macs, "params_original": arch.params(setup.widths_original),
        "params_final": arch.params(final), "within_tolerance": within(arch.macs(final), setup.target_macs, cfg.tolerance),
        "search_seconds": sum(r["seconds"] for r in records),
    }
    if env.is_main:
        run.write_json(run.widths_final, final)
    if cfg.final_epochs > 0:
        summary.update(final_comparison(setup, run, final, progress=progress))
    if env.is_main:
        run.write_json(run.summary, summary)
    return SearchResult(run.path, records, setup.widths_original, final, summary)


def final_comparison(setup: Setup, run: RunDir, searched: dict[str, int], *, progress: bool = True) -> dict[str, Any]:
    """Retrain the original and the searched widths with the same schedule and seed; compare on test.

    As in the official code, the final trainings use the whole training set (train + held-out).
    """
    cfg = setup.cfg
    schedule = cfg.replace(epochs=cfg.final_epochs).train
    results: dict[str, list[float]] = {"original": [], "searched": []}
    for name, widths in (("original", setup.widths_original), ("searched", searched)):
        path = run.final / f"{name}_seed{cfg.seed}.json"
        if path.exists():  # finished before an interruption
            results[name].append(run.read_json(path)["test_acc"])
            continue
        trained = build_and_train(setup.arch, widths, setup.data, schedule, seed=cfg.seed, device=setup.device,
                                  env=setup.env, progress=progress, desc=f"final {name}", eval_splits=("test",),
                                  train_split="full",
                                  **_trainer_state(run, path.with_suffix(".pt"), setup.env, widths=widths))
        acc = trained.metrics["test"].top1
        results[name].append(acc)
        log.info("final %-8s  MACs %8.3fM  test %6.2f%%  %6.1fs", name, setup.arch.macs(widths) / 1e6, 100 * acc,
                 trained.seconds)
        if setup.env.is_main:
            path.with_suffix(".pt").unlink(missing_ok=True)
            run.write_json(path, {"widths": widths, "test_acc": acc, "test_loss": trained.metrics["test"].loss,
                                  "epochs": cfg.final_epochs, "seed": cfg.seed, "seconds": trained.seconds})
    original, _ = _mean_std(results["original"])
    searched_acc, _ = _mean_std(results["searched"])
    return {"final_epochs": cfg.final_epochs, "original_test_acc": original, "searched_test_acc": searched_acc,
            "test_acc_gain": searched_acc - original}


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
