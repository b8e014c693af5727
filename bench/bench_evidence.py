"""The evidence: does FUR-guided adjustment beat uniform widths, and beat chance, at equal MACs?

One protocol for every family and seed (all arms within 1% of the same MACs, the same training
recipe, the same seeds; differences are paired seed by seed):

1. ``uniform``: the family's widths;
2. ``adjusted``: the widths a search finds (``netadjust search``, seed s);
3. ``random``: the same search with ``--guide random``: the same rule, k, steps and budget
   restore, but the layers it widens and narrows are drawn at random instead of ranked by FUR.
   Its widths do not depend on its trainings, so they are computed without them
   (``netadjust.search.random_guided_widths``; tests check they are the search's). Results files
   made before 2026-12-02 hold random searches whose consecutive seeds shared most of their
   draws (see ``netadjust.search.round_seed``); their widths are not this control's, so their
   random searches are never reused, and their random finals only where the widths match;
4. ``uniform_0.64`` against ``adjusted_0.64``: the family's widths scaled to 0.64x the MACs, and a
   search at ``--budget 0.64``. Uniform minus ``uniform_0.64`` is what 1/0.64 times the MACs buy the uniform
   widths: the yardstick of what a search's gain at equal MACs is worth;
5. ``random_0.64``: the random control at ``--budget 0.64`` (only when ``--arms`` names it).

``uniform`` always runs, and ``adjusted`` unless ``--skip-adjusted`` leaves it out (its search and finals), for
a run about the 0.64x arms alone.

Every arm's widths are then trained with the same final schedule (``final_epochs`` on train +
held-out, as a search's final comparison) and tested. ``plateau`` trains the uniform widths of
seed 0 for half and twice the final epochs too, to show whether the final trainings are long
enough for the uniform network's accuracy to have stopped rising.

Modes (``--mode``): ``gpu`` (the whole Fashion-MNIST training set on one GPU: measured about 5
minutes per family on an H100 with 10-epoch final trainings; the default 20-epoch finals add
about 2), ``cpu`` (a reduced scale meant to fit two hours on 2 cores: 2,000 training images, 600
held out; measured 87 minutes for its three families on 2026-12-01, bench/RESULTS_evidence.md),
``paper`` (``--dataset cifar100 --data-dir DIR``: the paper's 10 rounds x 20 epochs and 200 final
epochs at width 1.0; about 5 hours per family on one H100, an estimate from the Fashion-MNIST
rates scaled by MACs, not a measurement) and ``quick`` (digits, a few minutes: a rehearsal of the
script). ``--families`` and ``--seeds`` cut a mode down (``--seeds 10..19``: those seeds alone;
``0..9,30..45``: two ranges); ``--final-epochs`` sets the finals' length, ``--rounds`` the searches' number of rounds,
``--round-epochs`` the length of every round's training, ``--min-width`` the narrowest width the
searches (and the random control and uniform 0.64x widths) may give a layer, ``--width-mult`` every arm's width
multiplier, ``--train-subset`` and ``--heldout-fraction`` the data's scale (the CPU mode's
earlier runs, up to 2026-12-01, used 4,000 images and 0.02: pass both to continue or extend them);
``--searches-from`` takes the searches of earlier results files made with the same
search settings, so that longer finals need no new searches, and ``--finals-from`` the final
trainings of earlier files made with the same final settings where their widths are the ones this
run would train (the uniform and random arms' widths do not depend on the searches' training, so
new searches need train only their own). Everything measured goes into one JSON file
(``--out``, by default ``results.json`` in the ``--work`` folder), rewritten after every search and
every final training (each printed as it ends); a rerun with the same ``--out`` and ``--work``
continues where the last one stopped.

    python bench/bench_evidence.py --mode cpu --out bench/results_evidence_cpu_half.json
    python bench/bench_evidence.py --mode cpu --train-subset 4000 --heldout-fraction 0.02 --families pyramidnet20 \
        --arms random --final-epochs 40 --plateau 20 80 --searches-from bench/results_evidence_cpu.json \
        --out bench/results_evidence_cpu_plateau.json
    python bench/bench_evidence.py --render bench/results_evidence_cpu_half.json --plots bench/plots

``--render`` prints the markdown of one results file; bench/RESULTS_evidence.md gathers those of
the runs made, under a reading written by hand. ``--plans bench/evidence_plans.json`` prints the
table of the tests fixed in a commit before their results (the ledger names each one's plan, results
file, family, seeds and comparison), every figure computed from the results files. ``--longer-finals SHORT
LONG`` prints what the longer finals of results file LONG changed, seed by seed, against SHORT's finals of the
same seeds and widths (every paired difference and every arm's accuracy). ``--across OLD NEW`` prints what a
setting changed between two runs of the same seeds (say ``--min-width``): each arm's finals in NEW minus the
same arm's in OLD, seed by seed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch

from machine import device_name
from seeds import parse_seeds, seed_range
from netadjust.budget import Cost
from netadjust.config import SearchConfig, TrainConfig
from netadjust.data import load_dataset
from netadjust.models import get_arch
from netadjust.search import random_guided_widths, restore_budget, search_many
from netadjust.stats import paired_difference, paired_p_value
from netadjust.train import Training, train_concurrently

ARMS = ("uniform", "adjusted", "random", "uniform_0.64", "adjusted_0.64", "random_0.64")
DEFAULT_ARMS = ARMS[:5]  # a run's arms unless --arms names others, and those of files that predate the setting
BUDGET = {arm: 0.64 if arm.endswith("_0.64") else 1.0 for arm in ARMS}  # each arm's MACs, as a fraction of uniform's
RANDOM = ("random", "random_0.64")  # the random control's arms, computed without training
SEARCHED = ("adjusted", "adjusted_0.64")  # the arms searched with FUR
COMPARISONS = (("adjusted", "uniform"), ("adjusted", "random"), ("random", "uniform"),
               ("adjusted_0.64", "uniform_0.64"), ("uniform", "uniform_0.64"), ("adjusted_0.64", "random_0.64"),
               ("random_0.64", "uniform_0.64"))
MODES = {
    "gpu": dict(dataset="fashion-mnist", families=("resnet20", "plain20", "pyramidnet20"), width_mult=0.5, seeds=5,
                train_subset=None, heldout_fraction=0.1, rounds=5, epochs=2, repeats=2, final_epochs=20,
                plateau=(10, 40), plateau_families=("resnet20",)),
    "cpu": dict(dataset="fashion-mnist", families=("resnet20", "plain20", "pyramidnet20"), width_mult=0.5, seeds=5,
                train_subset=2000, heldout_fraction=0.01, rounds=3, epochs=2, repeats=2, final_epochs=8,
                plateau=(4, 16), plateau_families=("resnet20",)),
    "paper": dict(dataset="cifar100", families=("resnet20", "plain20", "pyramidnet20"), width_mult=1.0, seeds=5,
                  train_subset=None, heldout_fraction=0.1, rounds=10, epochs=20, repeats=5, final_epochs=200,
                  plateau=(), plateau_families=()),
    "quick": dict(dataset="digits", families=("resnet20", "plain20", "pyramidnet20"), width_mult=0.25, seeds=2,
                  train_subset=512, heldout_fraction=0.1, rounds=2, epochs=1, repeats=2, final_epochs=2,
                  plateau=(1, 4), plateau_families=("resnet20",)),
}
# The settings a search's result depends on: searches made with the same ones may be reused (--searches-from).
SEARCH_SETTINGS = ("dataset", "width_mult", "train_subset", "heldout_fraction", "rounds", "epochs", "repeats",
                   "warm_start", "min_width")
# The settings a final training's result depends on, besides its seed and widths (--finals-from).
FINAL_SETTINGS = ("dataset", "width_mult", "train_subset", "heldout_fraction", "final_epochs")
# The paper's ResNet-18 0.8x on ImageNet before (51/102/204/409) and after its search (Figure 4;
# conv1, conv2 of each block, per stage), as given in the paper.
PAPER_BEFORE = (51, 102, 204, 409)
PAPER_AFTER = ((26, 53, 16, 62), (103, 96, 84, 89), (366, 162, 184, 174), (673, 283, 637, 833))


class Comparison(NamedTuple):
    """Arm ``a`` against arm ``b`` over the same seeds: test accuracy differences seed by seed, their mean,
    95% t interval and the paired t test's two-sided p (interval and p ``None`` for one seed)."""
    a: str
    b: str
    diffs: list[float]
    gain: float
    ci: tuple[float, float] | None
    p: float | None


def paired(a: str, b: str, xs: list[float], ys: list[float]) -> Comparison:
    """``xs`` (of ``a``) against ``ys`` (of ``b``), paired seed by seed."""
    gain, ci = paired_difference(xs, ys)
    return Comparison(a, b, [x - y for x, y in zip(xs, ys)], gain, ci, paired_p_value(xs, ys))


def compare(finals: dict, arms, seeds) -> list[Comparison]:
    """Every comparison of COMPARISONS whose two arms are both in ``arms``, from the final trainings
    ``finals`` (keys ``arm/seed``)."""
    acc = {arm: [finals[f"{arm}/{i}"]["test_acc"] for i in seeds] for arm in arms}
    return [paired(a, b, acc[a], acc[b]) for a, b in COMPARISONS if a in arms and b in arms]


def format_p(p: float | None) -> str:
    """A two-sided p-value: two decimals from 0.1 up, two significant figures below ("-" where there is none)."""
    if p is None:
        return "-"
    if p < 1e-4:
        return "< 0.0001"
    return f"{p:.2f}" if p >= 0.0995 else f"{p:.2g}"


class Results:
    """The JSON file of everything measured, loaded if it exists (to continue a run)."""

    def __init__(self, path: Path, settings: dict) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            self.data = json.loads(path.read_text())
            if self.data["settings"] != settings:
                sys.exit(f"{path} holds a run with other settings; pass another --out")
        else:
            self.data = {"settings": settings, "device": device_name(), "torch": torch.__version__,
                         "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                         "command": " ".join(sys.argv), "families": {}}
        self.save()

    def family(self, name: str) -> dict:
        return self.data["families"].setdefault(name, {"searches": {}, "finals": {}, "plateau": {}})

    def save(self) -> None:
        self.data["updated"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)


def data_for(s: dict, seed: int, data_dir: str | None):
    return load_dataset(s["dataset"], data_dir=data_dir, heldout_fraction=s["heldout_fraction"], seed=seed,
                        train_subset=s["train_subset"])


# What the runs of results files that predate a setting ran with (the library's min width, cold searches).
UNRECORDED = {"min_width": SearchConfig().min_width, "warm_start": False}


def setting(s: dict, key: str):
    """A run's value of setting ``key``: the recorded one, else what runs that predate it used."""
    return s.get(key, UNRECORDED.get(key))


def run_searches(s: dict, family: str, record: dict, args: argparse.Namespace, save) -> None:
    """The searches of every searched arm and seed not yet recorded, side by side on a GPU; each is
    recorded and ``save``d as soon as it ends."""
    todo = {}
    for seed in seed_range(s["seeds"]):
        for arm in SEARCHED:
            if arm not in s["arms"] or f"{arm}/{seed}" in record["searches"]:
                continue
            out = Path(args.work) / family / arm / f"seed{seed}"
            todo[f"{arm}/{seed}"] = SearchConfig.from_dict({
                "arch": family, "width_mult": s["width_mult"], "dataset": s["dataset"], "data_dir": args.data_dir,
                "train_subset": s["train_subset"], "heldout_fraction": s["heldout_fraction"], "rounds": s["rounds"],
                "epochs": s["epochs"], "repeats": s["repeats"], "budget": BUDGET[arm], "seed": seed,
                "final_epochs": 0, "device": args.device, "out": str(out), "warm_start": setting(s, "warm_start"),
                "min_width": setting(s, "min_width")})
    unfinished = {k for k, cfg in todo.items() if Path(cfg.out).exists()}  # left by an earlier run

    def keep(key: str, result) -> None:
        record["searches"][key] = {
            "widths": result.widths_final, "macs": result.summary.macs_final,
            "macs_target": result.summary.macs_target, "seconds": result.summary.search_seconds,
            "rounds": [{"moves": r.moves, "heldout_acc": r.heldout_acc} for r in result.records]}
        save()
        done = sum(k in record["searches"] for k in todo)
        print(f"  {family} search {key}: held-out {100 * result.records[-1].heldout_acc:.2f}% in "
              f"{result.summary.search_seconds:.0f} s ({done}/{len(todo)})", flush=True)

    for resume in (False, True):  # fresh searches, then the unfinished ones
        keys = [k for k in todo if (k in unfinished) == resume]
        if keys:
            search_many([todo[k] for k in keys], on_end=lambda i, result: keep(keys[i], result), resume=resume,
                        progress=False)


def arm_widths(s: dict, family: str, arch, record: dict, arm: str, seed: int) -> dict[str, int]:
    if arm == "uniform":
        return arch.default_widths()
    if arm in SEARCHED:
        return record["searches"][f"{arm}/{seed}"]["widths"]
    cfg = SearchConfig.from_dict({"arch": family, "width_mult": s["width_mult"], "rounds": s["rounds"], "seed": seed,
                                  "budget": BUDGET[arm], "min_width": setting(s, "min_width")})
    if arm == "uniform_0.64":  # what a search at --budget 0.64 starts from: its own budget restore
        cost = Cost(arch)
        return restore_budget(cfg, arch, arch.default_widths(), cfg.budget * cost.start(), cost)
    return random_guided_widths(cfg, arch)[-1]


def load_matching(flag: str, sources: list[str], s: dict, settings: tuple[str, ...]) -> list[tuple[str, dict]]:
    """The results files ``sources`` (name, data), if each was made with ``s``'s values of ``settings``."""
    loaded = []
    for source in map(Path, sources):
        data = json.loads(source.read_text())
        differ = [f"{k}: {data['settings'].get(k)} there, {s.get(k)} here" for k in settings
                  if data["settings"].get(k) != s.get(k)]
        if differ:
            sys.exit(f"{flag} {source}: made with other settings ({'; '.join(differ)})")
        loaded.append((source.name, data))
    return loaded


def reuse_searches(s: dict, sources: list[str]) -> dict:
    """The searches recorded in the results files ``sources``, by family, if they were made with ``s``'s search settings."""
    reused = {f: {} for f in s["families"]}
    for _, data in load_matching("--searches-from", sources, s, SEARCH_SETTINGS):
        for f in reused:
            reused[f].update(data["families"].get(f, {}).get("searches", {}))
    return reused


def reuse_finals(s: dict, sources: list[str]) -> dict:
    """The final and plateau trainings recorded in the results files ``sources``, as lists by family, table and
    key, each marked with the file it came from, if they were made with ``s``'s final settings on the same kind of
    device and torch. ``run_finals`` takes one only where its widths are exactly those it would train."""
    reused = {f: {"finals": {}, "plateau": {}} for f in s["families"]}
    here = (device_name().split(":")[0], torch.__version__)
    for name, data in load_matching("--finals-from", sources, s, FINAL_SETTINGS):
        if (data["device"].split(":")[0], data["torch"]) != here:
            sys.exit(f"--finals-from {name}: trained on {data['device']} with torch {data['torch']}, "
                     f"not {here[0]} with torch {here[1]}")
        for f, tables in reused.items():
            for table, runs in tables.items():
                for key, run in data["families"].get(f, {}).get(table, {}).items():
                    runs.setdefault(key, []).append({"reused_from": name, **run})
    return reused


def run_finals(s: dict, family: str, record: dict, earlier: dict, args: argparse.Namespace, save) -> None:
    """Final trainings of every arm and seed, and the plateau runs, not yet recorded; each is
    recorded and ``save``d as soon as it ends. One in ``earlier`` (lists by table and key) with the
    same widths is recorded as it is instead of trained again."""
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    jobs = {}  # training -> (table, key, widths, arch)
    for seed in seed_range(s["seeds"]):
        data = data_for(s, seed, args.data_dir)
        arch = get_arch(family, num_classes=data.num_classes, in_channels=data.in_channels,
                        input_size=data.input_size, width_mult=s["width_mult"])
        runs = [(f"{arm}/{seed}", "finals", arm, s["final_epochs"]) for arm in s["arms"]]
        if seed == 0 and family in s["plateau_families"]:
            runs += [(str(e), "plateau", "uniform", e) for e in s["plateau"]]
        for key, table, arm, epochs in runs:
            widths = arm_widths(s, family, arch, record, arm, seed)
            if key in record[table]:
                if record[table][key]["widths"] == widths:
                    continue
                print(f"  {family} {table} {key}: recorded with other widths than this run's; trained again",
                      flush=True)
            old = next((run for run in earlier[table].get(key, ()) if run["widths"] == widths), None)
            if old is not None:
                record[table][key] = old
                print(f"  {family} {table} {key}: {100 * old['test_acc']:.2f}% from {old['reused_from']}", flush=True)
                continue
            torch.manual_seed(seed)
            training = Training(arch.build(widths), data, TrainConfig(epochs=epochs, device=str(device)), seed=seed,
                                device=device, train_split="full", eval_splits=("test",), progress=False,
                                desc=f"{family} {table} {key}")
            jobs[training] = (table, key, widths, arch)

    def keep(training: Training) -> None:
        table, key, widths, arch = jobs[training]
        r = training.result
        record[table][key] = {"test_acc": r.metrics["test"].top1, "test_loss": r.metrics["test"].loss,
                              "macs": arch.macs(widths), "params": arch.params(widths), "widths": widths,
                              "seconds": r.seconds, "train_loss": [h["train_loss"] for h in r.history]}
        save()
        done = sum(t.result is not None for t in jobs)
        print(f"  {family} {table} {key}: {100 * r.metrics['test'].top1:.2f}% in {r.seconds:.0f} s "
              f"({done}/{len(jobs)})", flush=True)

    save()
    train_concurrently(list(jobs), on_end=keep)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=sorted(MODES), default="cpu")
    p.add_argument("--families", nargs="*", default=None, help="a subset of the mode's families")
    p.add_argument("--seeds", type=parse_seeds, default=None,
                   help="override the mode's seeds: a count N (seeds 0..N-1; the modes run 5), a range A..B, or "
                        "ascending ranges joined by commas (0..9,30..45: a merge of two plans' seeds)")
    p.add_argument("--arms", nargs="+", choices=ARMS, default=None,
                   help="the arms (default all but random_0.64; uniform always runs, adjusted unless --skip-adjusted)")
    p.add_argument("--skip-adjusted", action="store_true",
                   help="leave out the 1.0x FUR-adjusted arm (its search and finals), for a run about the 0.64x arms")
    p.add_argument("--warm-start", action="store_true", default=None,
                   help="warm-started searches (default: every round from scratch)")
    p.add_argument("--plateau", nargs="*", type=int, default=None, metavar="EPOCHS",
                   help="final-training lengths of the uniform seed-0 curve, for every family run "
                        "(default: the mode's, for ResNet-20 only; none to skip)")
    p.add_argument("--final-epochs", type=int, default=None, help="override the mode's final-training length")
    p.add_argument("--rounds", type=int, default=None,
                   help="override the mode's number of search rounds (a search setting: new searches)")
    p.add_argument("--round-epochs", type=int, default=None,
                   help="override the mode's training epochs per search round (a search setting: new searches)")
    p.add_argument("--width-mult", type=float, default=None,
                   help="override the mode's width multiplier, the same for every arm (cpu and gpu: 0.5; a search "
                        "and final setting: new searches and finals)")
    p.add_argument("--min-width", type=int, default=None,
                   help="the searches' narrowest width (default the library's, 4): a lower one lets the searches, "
                        "the random control and the uniform 0.64x widths narrow the layers it would hold")
    p.add_argument("--train-subset", type=int, default=None,
                   help=f"override the mode's number of training images (cpu: {MODES['cpu']['train_subset']}; "
                        "its runs before 2026-12-01: 4000)")
    p.add_argument("--heldout-fraction", type=float, default=None,
                   help=f"override the mode's held-out share of the training set (cpu: "
                        f"{MODES['cpu']['heldout_fraction']}; its runs before 2026-12-01: 0.02)")
    p.add_argument("--searches-from", metavar="JSON", nargs="+", default=None,
                   help="reuse the searches recorded in earlier results files made with the same search settings "
                        "(to train their widths again, e.g. with longer finals)")
    p.add_argument("--finals-from", metavar="JSON", nargs="+", default=None,
                   help="reuse the final trainings recorded in earlier results files made with the same final "
                        "settings on the same kind of device, where their widths are the ones this run would train "
                        "(e.g. the uniform and random arms beside new searches)")
    p.add_argument("--dataset", default=None, help="override the mode's data set (e.g. cifar100 with --mode paper)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--work", default=None, help="run directories of the searches (default runs/evidence-MODE)")
    p.add_argument("--out", default=None, help="JSON file of the results (default WORK/results.json)")
    p.add_argument("--render", metavar="JSON", help="print the markdown of a results file and exit")
    p.add_argument("--plots", default=None, help="with --render: write the plots into this folder")
    p.add_argument("--longer-finals", metavar="JSON", nargs=2,
                   help="SHORT LONG: print what the longer finals of results file LONG changed against SHORT's finals "
                        "of the same seeds and widths (every paired difference and arm, seed by seed) and exit")
    p.add_argument("--across", metavar="JSON", nargs=2,
                   help="OLD NEW: print each arm's finals in results file NEW minus the same arm's in OLD, paired over "
                        "the seeds both trained it on (or those of --seeds), with the settings that differ, and exit "
                        "(e.g. what --min-width changed)")
    p.add_argument("--plans", metavar="JSON",
                   help="print the table of the planned tests a ledger lists (bench/evidence_plans.json) and exit")
    args = p.parse_args()
    # Refused before anything is written (the searches would refuse some of them only later).
    for flag in ("final_epochs", "rounds", "round_epochs", "train_subset", "min_width"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be a positive integer, got {getattr(args, flag)}")
    if args.width_mult is not None and not args.width_mult > 0:
        p.error(f"--width-mult must be positive, got {args.width_mult}")
    if args.heldout_fraction is not None and not 0 < args.heldout_fraction < 1:
        p.error(f"--heldout-fraction must be in (0, 1): FUR needs a held-out split; got {args.heldout_fraction}")
    if args.skip_adjusted and args.arms and "adjusted" in args.arms:
        p.error("--skip-adjusted leaves out the arm that --arms names (adjusted): drop one of the two")
    if args.render:
        from bench_evidence_report import render  # noqa: PLC0415 - matplotlib only when rendering

        print(render(Path(args.render), Path(args.plots) if args.plots else None))
        return
    if args.longer_finals:
        from bench_evidence_report import longer_finals  # noqa: PLC0415

        print(longer_finals(*map(Path, args.longer_finals)))
        return
    if args.across:
        from bench_evidence_report import across  # noqa: PLC0415

        print(across(*map(Path, args.across), seed_range(args.seeds) if args.seeds is not None else None))
        return
    if args.plans:
        from bench_evidence_report import planned_tests  # noqa: PLC0415

        print(planned_tests(Path(args.plans)))
        return
    s = dict(MODES[args.mode], mode=args.mode)
    overrides = {"dataset": args.dataset, "families": tuple(args.families) if args.families else None,
                 "seeds": args.seeds, "warm_start": args.warm_start, "final_epochs": args.final_epochs,
                 "rounds": args.rounds, "epochs": args.round_epochs, "width_mult": args.width_mult,
                 "train_subset": args.train_subset,
                 "heldout_fraction": args.heldout_fraction, "min_width": args.min_width}
    # Only what is given is recorded (warm_start too), so that earlier results files still continue.
    s.update({k: v for k, v in overrides.items() if v is not None})
    reused, earlier = reuse_searches(s, args.searches_from or []), reuse_finals(s, args.finals_from or [])
    for key, files in (("searches_from", args.searches_from), ("finals_from", args.finals_from)):
        if files:
            s[key] = ", ".join(Path(f).name for f in files)
    always = ("uniform",) if args.skip_adjusted else ("uniform", "adjusted")
    s["arms"] = tuple(a for a in ARMS if a in always or a in (args.arms or DEFAULT_ARMS))
    if set(RANDOM) & set(s["arms"]):  # files made before 2026-12-02 lack it: their control drew by seed + round
        s["random_draws"] = "per seed"
    if args.plateau is not None:
        s["plateau"], s["plateau_families"] = tuple(args.plateau), s["families"]
    args.work = args.work or f"runs/evidence-{args.mode}"
    args.out = args.out or f"{args.work}/results.json"
    results = Results(Path(args.out), {k: list(v) if isinstance(v, tuple) else v for k, v in s.items()})
    seeds = seed_range(s["seeds"])
    for family in s["families"]:
        record = results.family(family)
        for key, search in reused[family].items():  # only those this run searches (random ones are computed)
            arm, seed = key.split("/")
            if arm in SEARCHED and arm in s["arms"] and int(seed) in seeds:
                record["searches"].setdefault(key, search)
        start = time.perf_counter()
        run_searches(s, family, record, args, results.save)
        record["seconds"] = record.get("seconds", 0.0) + time.perf_counter() - start
        results.save()
        print(f"{family}: searches done ({time.perf_counter() - start:.0f} s)", flush=True)
        start = time.perf_counter()
        run_finals(s, family, record, earlier[family], args, results.save)
        record["seconds"] = record.get("seconds", 0.0) + time.perf_counter() - start
        results.save()
        print(f"{family}: final trainings done ({time.perf_counter() - start:.0f} s)", flush=True)
        for c in compare(record["finals"], s["arms"], seeds):
            print(f"  {c.a} - {c.b}: {100 * c.gain:+.2f} points"
                  + (f" [{100 * c.ci[0]:+.2f}, {100 * c.ci[1]:+.2f}], p = {format_p(c.p)}" if c.ci else ""), flush=True)


if __name__ == "__main__":
    main()
