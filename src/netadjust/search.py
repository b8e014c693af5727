"""The search loop: train -> FUR -> adjust -> restore the budget, for T rounds; then compare.

``search(SearchConfig(...))`` runs a whole search into a run directory (see rundir.py) and
returns a :class:`SearchResult`; ``search_many`` runs several side by side on a GPU. Every check
that needs no training (architecture, data, the budget, ``k``) runs before the run directory is
touched (session.py). ``guide="random"`` replaces FUR by random scores: the same rule moves
layers drawn at random, a control that tells what FUR itself contributes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .adjust import adjust_widths
from .budget import Cost, fit_budget, within
from .config import SearchConfig
from .dist import broadcast_object, pick_device
from .errors import ConfigError
from .export import load_trained, trained_state
from .fur import estimate_fur, random_scores
from .io import save_torch_atomic
from .latency import LatencyTable, Stopwatch
from .models import Arch, channel_importance, resize, top_channels
from .records import FinalRun, RoundRecord, Summary
from .rundir import RunDir
from .session import Session, open_run, open_session
from .stats import mean_std, paired_difference
from .steps import Distillation
from .train import Training, interleave, run_together
from .widths import Widths

log = logging.getLogger(__name__)


@dataclass
class SearchResult:
    run_dir: Path
    records: list[RoundRecord]
    widths_original: Widths  # the starting widths, at the budget
    widths_final: Widths
    summary: Summary


def search(cfg: SearchConfig, *, resume: bool = False, overwrite: bool = False, allow_changes: bool = False,
           progress: bool = True) -> SearchResult:
    """Run (or resume) a whole search; see the module docstring and README for the outputs.

    ``resume=True`` continues the run in ``cfg.out`` from its last completed epoch; its stored
    configuration must equal ``cfg`` unless ``allow_changes``.
    """
    return search_many([cfg], resume=resume, overwrite=overwrite, allow_changes=allow_changes, progress=progress)[0]


def search_many(cfgs: list[SearchConfig], on_end: Callable[[int, SearchResult], None] | None = None,
                **kwargs: Any) -> list[SearchResult]:
    """Several searches (each into its own ``out``): side by side on a GPU, a training step of
    each in turn on its own CUDA stream, so that small networks share the GPU; one after the
    other on the CPU. ``on_end(i, result)`` is called as the search of ``cfgs[i]`` ends. Other
    keyword arguments as :func:`search`."""
    results: list[SearchResult | None] = [None] * len(cfgs)
    side_by_side = len(cfgs) > 1 and pick_device(cfgs[0].train.device).type == "cuda"
    if side_by_side:
        kwargs["progress"] = False  # bars of several searches would interleave

    def run(i: int, cfg: SearchConfig) -> Iterator[None]:
        results[i] = yield from search_steps(cfg, **kwargs)
        if on_end is not None:
            on_end(i, results[i])

    runs = [run(i, cfg) for i, cfg in enumerate(cfgs)]
    if side_by_side:
        runs = [interleave(runs)]
    for steps in runs:
        for _ in steps:
            pass
    return results


def search_steps(cfg: SearchConfig, *, resume: bool = False, overwrite: bool = False, allow_changes: bool = False,
                 progress: bool = True) -> Generator[None, None, SearchResult]:
    """The search as a generator that yields after every training step and returns the result."""
    session = open_session(cfg, need_heldout=True)
    arch, data, env = session.arch, session.data, session.env
    cfg.rule().check(len(arch.keys()))
    warm_rounds = arch.resizable if cfg.warm_start is None else cfg.warm_start
    if warm_rounds and not arch.resizable:
        raise ConfigError(f"--warm-start is not available for {arch.name}: netadjust carries trained weights to other "
                          f"widths only for its own families (see `netadjust models`); drop --warm-start")
    teaching = Teaching.of(cfg, session)  # a teacher file is read now, not after the search
    table = _latency_table(cfg, session, resume)
    cost = Cost(arch, table if cfg.budget_metric == "latency" else None)  # what the budget holds
    target = cfg.budget * cost.start()
    macs_target = cfg.budget * arch.macs(arch.default_widths())  # = target for a MACs budget
    original = restore_budget(cfg, arch, session.widths, target, cost)
    run, records = open_run(session, resume=resume, overwrite=overwrite, allow_changes=allow_changes)
    if table is not None and env.is_main:
        run.write_json(run.latency, table.to_dict())
    widths = records[-1].next_widths if records else original
    log.info("search: %s on %s, %d searchable layers, target %s, %d rounds%s", arch.name, data.name,
             len(widths), cost.show(target), cfg.rounds, f" (resuming after round {len(records)})" if records else "")
    started, first = time.perf_counter(), len(records)
    previous = _round_state(run, first - 1) if warm_rounds and first > 0 else None
    for t in range(first, cfg.rounds):
        round_start = time.perf_counter()
        warm = previous is not None
        schedule = dataclasses.replace(cfg.train, epochs=cfg.warm_epochs_or_default()) if warm else cfg.train
        torch.manual_seed(cfg.seed)
        model = (warm_start(arch, previous, widths, seed=round_seed(cfg.seed, t), widen=cfg.warm_widen) if warm
                 else arch.build(widths))
        training = Training(model, data, schedule, seed=cfg.seed, device=session.device, env=env, progress=progress,
                            desc=f"{cfg.out} round {t + 1}/{cfg.rounds}{' (warm)' if warm else ''}",
                            **run.trainer_state(run.current, write=env.is_main, round=t, widths=widths,
                                                train=dataclasses.asdict(schedule)))
        yield from training.run()
        trained = training.result
        train_seconds = time.perf_counter() - round_start
        if cfg.guide == "fur":
            # Every rank probes its share of the layers and ends with the whole FUR vector.
            fur = estimate_fur(trained.model, data, arch, widths, base_drop_rate=cfg.base_drop_rate,
                               repeats=cfg.repeats, batch_size=cfg.fur_batch_size, mode=cfg.fur_mode,
                               control_variate=cfg.fur_control_variate, device=session.device,
                               seed=round_seed(cfg.seed, t), env=env, progress=progress and env.is_main,
                               cost_derivative=table.derivative(widths, arch) if cfg.fur_cost == "latency" else None)
        else:
            fur = random_scores(widths, seed=round_seed(cfg.seed, t), base_loss=trained.metrics["heldout"].loss)
        state = {"round": t, "widths": widths, "arch": arch.settings(), "config": cfg.to_flat(),
                 "model": trained.model.state_dict(), "channel_importance": fur.channel_importance}
        if env.is_main:
            run.save_checkpoint(t, state)
        previous = state if warm_rounds else None
        next_widths, moves = adjust_and_restore(cfg, arch, widths, original, fur.fur, t, target, cost)
        if broadcast_object(next_widths) != next_widths:
            raise RuntimeError(f"rank {env.rank} computed other widths than rank 0 in round {t}")
        heldout, test = trained.metrics["heldout"], trained.metrics["test"]
        record = RoundRecord(
            round=t, widths=widths, macs=arch.macs(widths), params=arch.params(widths),
            heldout_acc=heldout.top1, heldout_loss=heldout.loss, test_acc=test.top1, test_loss=test.loss,
            fur=fur.fur, fur_stderr=fur.stderr, drop_rate=fur.drop_rate, drop_rate_clipped=fur.clipped,
            fur_base_loss=fur.base_loss, moves=moves, next_widths=next_widths, next_macs=arch.macs(next_widths),
            train_seconds=train_seconds, fur_seconds=fur.seconds, seconds=time.perf_counter() - round_start,
            history=trained.history, guide=cfg.guide, warm=warm,
            latency=table.predict(widths, arch) if table else None,
            next_latency=table.predict(next_widths, arch) if table else None)
        if env.is_main:
            run.append_record(record)
            run.current.unlink(missing_ok=True)
        records.append(record)
        # Remaining rounds at this pace, plus the final trainings.
        per_round = (time.perf_counter() - started) / (t + 1 - first)
        finals = 2 * cfg.final_seeds * train_seconds * cfg.final_epochs / cfg.train.epochs
        widened = sum(1 for d in moves.values() if d > 0)
        log.info("round %2d/%d  MACs %8.3fM  held-out %6.2f%%  test %6.2f%%  train %6.1fs  FUR %5.1fs  "
                 "widened %d narrowed %d  next MACs %8.3fM%s  ETA %s", t + 1, cfg.rounds, record.macs / 1e6,
                 100 * record.heldout_acc, 100 * record.test_acc, train_seconds, fur.seconds, widened,
                 len(moves) - widened, record.next_macs / 1e6,
                 f" ({1e3 * record.next_latency:.3f} ms predicted)" if table else "",
                 _hms(per_round * (cfg.rounds - t - 1) + finals))
        widths = next_widths
    summary = Summary(
        arch=arch.settings(), dataset=data.name, rounds=cfg.rounds, macs_original=arch.macs(original),
        macs_final=arch.macs(widths), macs_target=macs_target, params_original=arch.params(original),
        params_final=arch.params(widths), within_tolerance=within(cost(widths), target, cfg.tolerance),
        search_seconds=sum(r.seconds for r in records), budget_metric=cfg.budget_metric,
        latency=_latency_summary(table, arch, original, widths, target if cost.table else None)
        if env.is_main else None)
    if summary.latency is not None:
        lat = summary.latency
        log.info("latency of the searched network: predicted %.3f ms, measured %.3f ms (%+.1f%%); original %.3f ms",
                 1e3 * lat["final_predicted"], 1e3 * lat["final_measured"], 100 * lat["prediction_error"],
                 1e3 * lat["original_measured"])
    if env.is_main:
        run.write_json(run.widths_final, widths)
    if cfg.final_epochs > 0:
        summary = dataclasses.replace(summary, **(yield from final_comparison(session, run, original, widths,
                                                                              teaching, progress=progress)))
    if env.is_main:
        run.write_json(run.summary, summary.to_dict())
    return SearchResult(run.path, records, original, widths, summary)


def round_seed(seed: int, round_index: int) -> int:
    """The seed of round ``round_index``'s draws in the search seeded ``seed``: FUR's masks, the
    random control's scores and a warm start's new weights. Distinct for every (seed, round)
    pair. Before 2026-12-02 it was ``seed + round_index``, which gave seed s in round t + 1 the
    draws of seed s + 1 in round t: the random control's searches of consecutive seeds then
    moved mostly the same layers (bench/RESULTS_evidence.md)."""
    return seed * 1_000_003 + round_index


def restore_budget(cfg: SearchConfig, arch: Arch, widths: Widths, target: float, cost: Cost) -> Widths:
    """``widths`` rescaled to the ``target`` cost with the search's tolerance and rounding."""
    return fit_budget(arch, widths, target, tolerance=cfg.tolerance, multiple_of=cfg.multiple_of,
                      min_width=min(cfg.min_width, *widths.values()), cost=cost)


def adjust_and_restore(cfg: SearchConfig, arch: Arch, widths: Widths, original: Widths, scores: dict[str, float],
                       round_index: int, target: float, cost: Cost) -> tuple[Widths, dict[str, int]]:
    """One round's widths step (pure): widen and narrow by ``scores`` (FUR, or the random
    control's draws), then restore the budget. Returns the next widths and the adjustment's moves."""
    adjusted, moves = adjust_widths(widths, original, scores, cfg.rule(), round_index)
    return restore_budget(cfg, arch, adjusted, target, cost), moves


def random_guided_widths(cfg: SearchConfig, arch: Arch, widths: Widths | None = None, *,
                         seed_of: Callable[[int, int], int] = round_seed) -> list[Widths]:
    """The widths of every round of a ``--guide random`` search of ``arch`` from ``widths`` (the
    family's by default), then its final widths: ``cfg.rounds + 1`` entries, computed without
    training. The control's scores depend only on the seed and the round, so its widths follow
    from the rule and the budget restore alone; the search reaches the same ones (tests check this).
    ``seed_of(seed, round)``: the rule that seeds each round's draws (the search's by default;
    ``lambda s, t: s + t`` gives the searches made before 2026-12-02).
    """
    if cfg.budget_metric != "macs":
        raise ConfigError(f"the random control's widths can be computed without training for a MACs budget only; "
                          f"got --budget-metric {cfg.budget_metric}")
    cost = Cost(arch)
    target = cfg.budget * cost.start()
    original = restore_budget(cfg, arch, widths or arch.default_widths(), target, cost)
    path = [original]
    for t in range(cfg.rounds):
        scores = random_scores(path[-1], seed=seed_of(cfg.seed, t), base_loss=0.0).fur
        path.append(adjust_and_restore(cfg, arch, path[-1], original, scores, t, target, cost)[0])
    return path


def _latency_table(cfg: SearchConfig, session: Session, resume: bool) -> LatencyTable | None:
    """The latency lookup table a run needs (--budget-metric or --fur-cost latency): the run's
    own when resuming, else measured on rank 0 and shared with the others."""
    if "latency" not in (cfg.budget_metric, cfg.fur_cost):
        return None
    run = RunDir(cfg.out)
    if resume and run.latency.exists():
        return LatencyTable.from_dict(run.read_object(run.latency))
    device = pick_device(cfg.latency_device) if cfg.latency_device else session.device
    table = LatencyTable.measure(session.arch, device, cfg.latency_batch) if session.env.is_main else None
    return LatencyTable.from_dict(broadcast_object(table.to_dict() if table else None))


def _latency_summary(table: LatencyTable | None, arch, original: Widths, searched: Widths,
                     target: float | None) -> dict[str, Any] | None:
    """Seconds of the original and searched networks, timed now and as the table predicts them
    (rank 0 only: the summary is its to write, and other ranks would disturb its timings)."""
    if table is None:
        return None
    watch = Stopwatch.of(table, arch)
    final_measured = watch.network(arch, searched)
    final_predicted = table.predict(searched, arch)
    return {"device": table.device, "batch": table.batch, "target": target,
            "original_measured": watch.network(arch, original),
            "original_predicted": table.predict(original, arch), "final_measured": final_measured,
            "final_predicted": final_predicted, "prediction_error": final_predicted / final_measured - 1}


def _round_state(run: RunDir, t: int) -> dict[str, Any]:
    """Round ``t``'s saved network (to warm-start the next round after a resume)."""
    return torch.load(run.checkpoint(t), map_location="cpu", weights_only=True)


def warm_start(arch, previous: dict[str, Any], widths: Widths, *, seed: int, widen: str = "split") -> torch.nn.Module:
    """The previous round's trained network resized to ``widths`` (docs/method.md#warm-start).

    Narrowed keys whose channels can be chosen keep their most important channels: FUR's
    per-channel first-order loss change where the round measured it (fast mode with the control
    variate), else BN scale times filter norm. Widened keys get new channels that leave the
    network's function unchanged (models/resize.py; ``widen``: zero-start or split channels).
    New weights are drawn from ``seed``.
    """
    old = previous["widths"]
    old_model = arch.build(old)
    old_model.load_state_dict(previous["model"])
    scores = previous.get("channel_importance")
    fallback = channel_importance(old_model, arch, old)  # the keys whose channels can be chosen
    importance = {k: torch.tensor(scores[k]) if scores else fallback[k] for k in fallback}
    state = resize(arch, old_model.state_dict(), old, widths, keep=top_channels(importance, widths),
                   generator=torch.Generator().manual_seed(seed % 2**63), widen=widen)
    model = arch.build(widths)
    model.load_state_dict(state)
    return model


def final_comparison(session: Session, run: RunDir, original: Widths, searched: Widths,
                     teaching: Teaching | None = None, *,
                     progress: bool = True) -> Generator[None, None, dict[str, Any]]:
    """Retrain the original and the searched widths with the same schedule, on seeds ``seed ..
    seed + final_seeds - 1``; compare on test, paired by seed. Returns the Summary's fields.

    As in the official code, the final trainings use the whole training set (train + held-out).
    With ``teaching`` (:class:`Teaching`) the searched networks learn from a teacher's
    soft targets as well (the original networks first, when they are the teachers). A result already on disk (an
    interrupted comparison) is reused only if it trained the same widths with the same schedule
    and the same teacher.
    """
    cfg, arch, env = session.cfg, session.arch, session.env
    schedule = dataclasses.replace(cfg.train, epochs=cfg.final_epochs)
    settings = dataclasses.asdict(schedule)
    seeds = list(range(cfg.seed, cfg.seed + cfg.final_seeds))
    stages = [("original", "searched")] if teaching is None else [("original",), ("searched",)]
    done: dict[tuple[str, int], FinalRun] = {}
    trained: dict[tuple[str, int], torch.nn.Module] = {}
    for names in stages:  # all of a stage at once: side by side on a GPU, one after the other elsewhere
        pending = []
        for seed in seeds:
            for name in names:
                widths = original if name == "original" else searched
                taught = teaching.record(seed) if teaching and name == "searched" else None
                path = run.final_result(name, seed)
                if path.exists():
                    prior = run.read_final(path)
                    if prior.widths == widths and prior.train == settings and prior.distill == taught:
                        done[name, seed] = prior
                        continue
                    log.info("final %s seed %d: %s holds another configuration's result; retraining", name, seed,
                             path)
                distill = teaching.distillation(seed, run, trained) if taught else None
                torch.manual_seed(seed)
                pending.append(((name, seed, widths, taught), Training(
                    arch.build(widths), session.data, schedule, seed=seed, device=session.device, env=env,
                    progress=progress, desc=f"final {name} seed {seed}", eval_splits=("test",), train_split="full",
                    distill=distill,
                    **run.trainer_state(path.with_suffix(".pt"), write=env.is_main, widths=widths, train=settings,
                                        distill=taught))))
        yield from run_together([training for _, training in pending])
        for (name, seed, widths, taught), training in pending:
            result = training.result
            trained[name, seed] = result.model
            test = result.metrics["test"]
            done[name, seed] = FinalRun(widths=widths, test_acc=test.top1, test_loss=test.loss,
                                        epochs=cfg.final_epochs, seed=seed, seconds=result.seconds, train=settings,
                                        distill=taught)
            log.info("final %-8s seed %d  MACs %8.3fM  test %6.2f%%  %6.1fs%s", name, seed, arch.macs(widths) / 1e6,
                     100 * test.top1, result.seconds, f"  (taught by {taught['teacher']})" if taught else "")
            if env.is_main:
                path = run.final_result(name, seed)
                save_torch_atomic(run.final_weights(name, seed), trained_state(
                    result.model, widths, arch.settings(), test_acc=test.top1, seed=seed, which=name))
                path.with_suffix(".pt").unlink(missing_ok=True)
                run.write_json(path, done[name, seed].to_dict())
    accs = {name: [done[name, seed].test_acc for seed in seeds] for name in ("original", "searched")}
    (orig_mean, orig_std), (searched_mean, searched_std) = mean_std(accs["original"]), mean_std(accs["searched"])
    gain, interval = paired_difference(accs["searched"], accs["original"])
    return {"final_epochs": cfg.final_epochs, "final_seeds": seeds, "original_test_accs": accs["original"],
            "searched_test_accs": accs["searched"], "original_test_acc": orig_mean, "searched_test_acc": searched_mean,
            "original_test_acc_std": orig_std, "searched_test_acc_std": searched_std, "test_acc_gain": gain,
            "test_acc_gain_ci95": list(interval) if interval else None}


@dataclass
class Teaching:
    """``--distill-from`` and its settings: who teaches each seed's searched network."""

    source: str  # "original", or a weights file
    alpha: float
    temperature: float
    model: torch.nn.Module | None = None  # the file's network

    @classmethod
    def of(cls, cfg: SearchConfig, session: Session) -> Teaching | None:
        """The settings' teaching, a teacher file read and checked against the data (None without)."""
        if cfg.distill_from is None:
            return None
        teaching = cls(cfg.distill_from, cfg.distill_alpha, cfg.distill_temperature)
        if cfg.distill_from != "original":
            teaching.model, meta = load_trained(cfg.distill_from)
            data = session.data
            theirs = (meta["arch"].get("num_classes"), *meta["input_shape"])
            ours = (data.num_classes, data.in_channels, data.input_size, data.input_size)
            if theirs != ours:
                raise ConfigError(f"--distill-from {cfg.distill_from}: the teacher takes {theirs[1]}x{theirs[2]}x"
                                  f"{theirs[3]} images into {theirs[0]} classes; {data.name} has {ours[1]}x{ours[2]}x"
                                  f"{ours[3]} images and {ours[0]} classes")
        return teaching

    def record(self, seed: int) -> dict[str, Any]:
        """What the final training of ``seed`` records of its teacher."""
        teacher = f"original seed {seed}" if self.source == "original" else self.source
        return {"teacher": teacher, "alpha": self.alpha, "temperature": self.temperature}

    def distillation(self, seed: int, run: RunDir, trained: dict[tuple[str, int], torch.nn.Module]) -> Distillation:
        """The distillation of ``seed``: the file's network, or the original network trained in this
        comparison (or by an earlier, interrupted one: its saved weights)."""
        if self.model is not None:
            model = self.model
        elif ("original", seed) in trained:
            model = trained["original", seed]
        else:
            model = load_trained(run.final_weights("original", seed))[0]
        return Distillation(model, self.alpha, self.temperature)


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
