"""The ``netadjust`` command line.

Each subcommand is a small function from parsed arguments to an exit code. Problems with the
user's input raise :class:`~netadjust.errors.NetadjustError`; ``main`` prints their message
on one line (no traceback) and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

import dataclasses

from . import __version__
from .config import SEARCH_FIELDS, TRAIN_FIELDS, SearchConfig, TrainConfig, flag, flatten, load_config_file
from .errors import ConfigError, DataError, NetadjustError, TrainingError
from .models import family_options, get_arch, list_archs
from .widths import load_widths

log = logging.getLogger("netadjust")


def add_arch_args(p: argparse.ArgumentParser, *, arch_default: str | None = "resnet20") -> None:
    g = p.add_argument_group("architecture")
    g.add_argument("--arch", default=arch_default, required=arch_default is None,
                   help="model family (see `netadjust models`; default %(default)s)")
    g.add_argument("--num-classes", type=int, default=None, help="classes of the classifier (default: the data set's, or 10)")
    g.add_argument("--in-channels", type=int, default=None, help="input channels (default: the data set's, or 3)")
    g.add_argument("--input-size", type=int, default=None, help="input height = width in pixels (default: the data set's, or 32)")
    g.add_argument("--width-mult", type=float, default=1.0, help="width multiplier of the initial widths (default 1.0)")
    g.add_argument("--residual", choices=("max", "local"), default=None, help=HELP["residual"])
    g.add_argument("--alpha", type=float, default=None, help=HELP["alpha"])
    g.add_argument("--growth", type=int, default=None, help=HELP["growth"])
    g.add_argument("--widths", metavar="FILE", default=None, help="JSON file of layer key -> channels (default: initial widths)")


def arch_from_args(args: argparse.Namespace, *, num_classes: int = 10, in_channels: int = 3, input_size: int = 32):
    """The Arch the flags describe; data-set values fill what the flags leave open."""
    def pick(flag, fallback):
        return fallback if flag is None else flag

    return get_arch(args.arch,
                    num_classes=pick(args.num_classes, num_classes),
                    in_channels=pick(args.in_channels, in_channels),
                    input_size=pick(args.input_size, input_size),
                    width_mult=args.width_mult, **family_options(args))


def widths_from_args(args: argparse.Namespace, arch) -> dict[str, int]:
    return arch.validate(load_widths(args.widths)) if args.widths else arch.default_widths()


# -- netadjust models ----------------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    archs = list_archs()
    width = max(map(len, archs))
    for name, desc in archs.items():
        print(f"{name:<{width}}  {desc}")
    return 0


# -- netadjust flops -----------------------------------------------------------------------
def flops_report(arch, widths: dict[str, int]) -> dict:
    """Total and per-layer MACs, params and dMACs/dc of ``widths`` as a JSON-able dict."""
    layers = arch.layers(widths)
    deriv = arch.macs_derivative(widths)
    macs = sum(layer.macs for layer in layers)
    stem = sum(layer.macs for layer in layers if layer.name == "stem")
    return {
        "arch": arch.settings(),
        "macs": macs,
        "macs_without_stem": macs - stem,
        "params": sum(layer.params for layer in layers),
        "layers": [{"name": layer.name, "cin": layer.cin, "cout": layer.cout, "macs": layer.macs,
                    "params": layer.params, "searchable": layer.name in widths,
                    "dmacs_dc": deriv.get(layer.name)} for layer in layers],
        "keys": [{"key": key, "width": widths[key], "dmacs_dc": deriv[key]} for key in widths],
    }


def cmd_flops(args: argparse.Namespace) -> int:
    arch = arch_from_args(args)
    report = flops_report(arch, widths_from_args(args, arch))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    settings = ", ".join(f"{k}={v}" for k, v in report["arch"].items() if k != "arch")
    print(f"{arch.name} ({settings})")
    name_w = max(len(row["name"]) for row in report["layers"])
    print(f"{'layer':<{name_w}}  {'in':>5}  {'width':>5}  {'MACs':>13}  {'params':>10}  {'dMACs/dc':>10}")
    for row in report["layers"]:
        d = f"{row['dmacs_dc']:,}" if row["searchable"] else "-"
        print(f"{row['name']:<{name_w}}  {row['cin']:>5}  {row['cout']:>5}  {row['macs']:>13,}  {row['params']:>10,}  {d:>10}")
    # Keys that set the width of several layers (e.g. a MobileNet stage) have no row of their own.
    shared = [row for row in report["keys"] if row["key"] not in {r["name"] for r in report["layers"]}]
    if shared:
        key_w = max(len(row["key"]) for row in shared)
        print(f"\n{'shared key':<{key_w}}  {'width':>5}  {'dMACs/dc':>10}")
        for row in shared:
            print(f"{row['key']:<{key_w}}  {row['width']:>5}  {row['dmacs_dc']:>10,}")
    print(f"total: {report['macs']:,} MACs ({report['macs'] / 1e6:.2f}M; "
          f"{report['macs_without_stem'] / 1e6:.2f}M without the stem), {report['params']:,} params "
          f"({report['params'] / 1e6:.2f}M)")
    return 0


# -- netadjust search / train: flags generated from the config dataclasses ----------------------
PRESETS: dict[str, dict] = {
    # A complete small search on the embedded digits data: a few minutes on 2 CPU cores.
    "demo": {"dataset": "digits", "rounds": 5, "epochs": 10, "final_epochs": 20, "out": "runs/demo"},
    # The official code's CIFAR protocol (DESIGN.md §2): the dataclass defaults plus 200 final epochs.
    "paper": {"final_epochs": 200},
}
HELP = {
    "arch": "model family (see `netadjust models`)", "widths": "JSON file of starting widths (default: the family's)",
    "residual": "CIFAR ResNet: stream width when a block narrows it (max or local; default max)",
    "alpha": "PyramidNet: total width increase over the net (default 24)",
    "growth": "DenseNet: growth rate of every layer (default 12)",
    "dataset": "digits, fashion-mnist, cifar10, cifar100 or imagefolder", "data_dir": "where the data set's files are (needed for cifar and imagefolder)",
    "heldout_fraction": "share of the training set kept for FUR estimation",
    "train_subset": "keep only the first N training images (default: all)", "rounds": "search rounds T",
    "k": "layers widened (and narrowed) per round", "k_decay": "k shrinks by this per round",
    "arch_lr": "relative width step of the most extreme layer", "arch_lr_decay": "step shrinks by this per rank",
    "min_width": "narrowing stops here", "base_drop_rate": "channel-dropout rate of an average layer for FUR",
    "repeats": "dropout passes per layer for FUR", "fur_mode": "fast or reference (the official scheme)",
    "fur_control_variate": "fast FUR mode: subtract the zero-mean first-order loss change",
    "fur_batch_size": "held-out batch size for FUR", "budget": "target MACs as a fraction of the original's",
    "tolerance": "allowed relative MACs error of the restore", "multiple_of": "round widths to multiples of this",
    "final_epochs": "retrain original and searched widths this long and compare (0: skip)",
    "seed": "seed of split, init, augmentation and dropout", "out": "output (run) directory",
    "epochs": "training epochs (per search round)", "drop_rate": "channel dropout while training",
    "device": "auto, cpu, cuda or cuda:N", "amp": "bfloat16 autocast on CUDA", "compile": "torch.compile the model",
}


def add_config_flags(p: argparse.ArgumentParser, names) -> None:
    """One flag per config field, defaulting to None so that only what the user typed overrides."""
    fields = {f.name: f for f in dataclasses.fields(SearchConfig) + dataclasses.fields(TrainConfig)}
    for name in names:
        default = fields[name].default
        # Optional fields (default None) take the type their annotation names first ("int | None").
        kind = type(default) if default is not None else {"int": int, "float": float}.get(
            str(fields[name].type).split()[0], str)
        kwargs = {"action": argparse.BooleanOptionalAction} if kind is bool else {"type": kind, "metavar": name.upper()}
        text = HELP.get(name, name.replace("_", " "))
        p.add_argument(flag(name), dest=name, default=None, **kwargs,
                       help=text if default is None else f"{text} (default {default})")


def config_from_args(args: argparse.Namespace, names) -> SearchConfig:
    """Defaults < preset < config file < flags."""
    values = dict(PRESETS[args.preset]) if getattr(args, "preset", None) else {}
    if getattr(args, "config", None):
        values.update(load_config_file(args.config))
    values.update({n: getattr(args, n) for n in names if getattr(args, n) is not None})
    return SearchConfig.from_dict(values, source="flags")


class JsonFormatter(logging.Formatter):
    """One JSON object per log line, for scripts (--log-json)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": record.created, "level": record.levelname, "logger": record.name,
                           "message": record.getMessage()})


def setup_logging(args: argparse.Namespace) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if getattr(args, "log_json", False) else logging.Formatter("%(message)s"))
    level = logging.WARNING if getattr(args, "quiet", False) else logging.INFO
    logging.basicConfig(level=level, handlers=[handler], force=True)


def widths_table(before: dict[str, int], after: dict[str, int]) -> str:
    width = max(map(len, before))
    lines = [f"{'layer':<{width}}  {'before':>6}  {'after':>6}  {'change':>7}"]
    for key in before:
        d = after[key] - before[key]
        lines.append(f"{key:<{width}}  {before[key]:>6}  {after[key]:>6}  {d:>+7}" if d else
                     f"{key:<{width}}  {before[key]:>6}  {after[key]:>6}  {'':>7}")
    return "\n".join(lines)


def cmd_search(args: argparse.Namespace) -> int:
    from .search import search

    if args.resume:
        # The stored configuration, with only the flags given now on top (checked by search()).
        from .rundir import RunDir

        args.preset = None
        stored = RunDir(args.resume).read_json(RunDir(args.resume).config)
        typed = {n: getattr(args, n) for n in SEARCH_FIELDS + TRAIN_FIELDS if getattr(args, n) is not None}
        cfg = SearchConfig.from_dict({**stored, **typed, "out": args.resume}, source=f"{args.resume}/config.json")
    else:
        cfg = config_from_args(args, SEARCH_FIELDS + TRAIN_FIELDS)
    log.info("%s: %d rounds of %d epochs on %s, final %d epochs -> %s",
             f"preset {args.preset}" if args.preset else "resuming", cfg.rounds,
             cfg.train.epochs, cfg.dataset, cfg.final_epochs, cfg.out)
    try:
        result = search(cfg, resume=bool(args.resume), overwrite=args.overwrite, allow_changes=args.allow_changes,
                        progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"netadjust: interrupted; the finished epochs are saved in {cfg.out}. Resume with:\n"
              f"  netadjust search --resume {cfg.out}", file=sys.stderr)
        return 130
    s = result.summary
    print(widths_table(result.widths_original, result.widths_final))
    print(f"MACs: original {s['macs_original']:,}  searched {s['macs_final']:,}  "
          f"({(s['macs_final'] - s['macs_original']) / s['macs_original']:+.2%})")
    if "searched_test_acc" in s:
        print(f"test accuracy after {s['final_epochs']} epochs: original {100 * s['original_test_acc']:.2f}%  "
              f"searched {100 * s['searched_test_acc']:.2f}%  ({100 * s['test_acc_gain']:+.2f} points)")
    print(f"run directory: {result.run_dir}")
    if args.report:
        from .report import write_report

        try:
            write_report(result.run_dir)  # logs where it wrote the report
        except ConfigError as exc:  # e.g. matplotlib missing: the search itself succeeded
            log.warning("no report: %s", exc)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    write_report(args.run_dir, args.out)  # logs where it wrote the report
    return 0


TRAIN_ONLY = ("arch", "width_mult", "residual", "alpha", "growth", "widths", "dataset", "data_dir", "heldout_fraction",
              "train_subset", "seed", "out") + TRAIN_FIELDS


def cmd_train(args: argparse.Namespace) -> int:
    import time

    from .dist import init_distributed, pick_device
    from .io import save_torch_atomic, write_json_atomic
    from .rundir import RunDir
    from .search import arch_for, load_data, start_widths
    from .train import build_and_train

    if args.out is None:
        args.out = "runs/train"
    cfg = config_from_args(args, TRAIN_ONLY).validate()
    data = load_data(cfg)
    if args.in_channels is not None and args.in_channels != data.in_channels:
        raise DataError(f"--in-channels {args.in_channels} does not match {data.name}, whose images have "
                        f"{data.in_channels} channel(s); drop --in-channels")
    arch = arch_for(cfg, data)
    widths = start_widths(cfg, arch)
    out = RunDir(cfg.out)
    if out.exists() and not args.overwrite:
        raise ConfigError(f"output directory {out.path} already exists; pass --overwrite or choose another --out")
    device = pick_device(cfg.train.device)
    env = init_distributed(device)
    meta = {"widths": widths, "arch": arch.settings(), "config": flatten(cfg.to_dict())}

    def checkpoint(state):
        if env.is_main:
            save_torch_atomic(out.path / "checkpoint.pt", {**meta, **state})

    start = time.perf_counter()
    result = build_and_train(arch, widths, data, cfg.train, seed=cfg.seed, device=device, env=env,
                             checkpoint=checkpoint, progress=not args.quiet)
    summary = {"test_acc": result.metrics["test"].top1, "test_top5": result.metrics["test"].top5,
               "test_loss": result.metrics["test"].loss, "heldout_acc": result.metrics["heldout"].top1,
               "heldout_loss": result.metrics["heldout"].loss, "macs": arch.macs(widths),
               "params": arch.params(widths), "seconds": time.perf_counter() - start, "epochs": cfg.train.epochs,
               "widths": widths, "arch": arch.settings(), "dataset": data.name, "seed": cfg.seed}
    if env.is_main:
        write_json_atomic(out.path / "summary.json", summary)
        print(f"test {100 * summary['test_acc']:.2f}%  held-out {100 * summary['heldout_acc']:.2f}%  "
              f"MACs {summary['macs']:,}  params {summary['params']:,}  {summary['seconds']:.1f}s  -> {out.path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netadjust", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"netadjust {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list the model families")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("flops", help="exact MACs, params and dMACs/dc per layer of a configuration")
    add_arch_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_flops)

    p = sub.add_parser("search", help="search the widths of a network at a MACs budget",
                       description="Network adjustment: train, estimate FUR, adjust widths, restore the budget; "
                                   "repeat for --rounds, then optionally retrain and compare (--final-epochs).")
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo",
                   help="a group of defaults: demo (quick digits search, the default) or paper (official schedule)")
    p.add_argument("--config", metavar="FILE", help="JSON or TOML file of settings (flags override it)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted search in RUN_DIR")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--allow-changes", action="store_true", help="with --resume: accept flags that change the stored settings")
    p.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                   help="write RUN_DIR/report (plots + markdown) at the end (default on)")
    add_common_flags(p)
    add_config_flags(p, SEARCH_FIELDS + TRAIN_FIELDS)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("report", help="plots and a markdown summary of a run directory",
                       description="Write PNG plots and report.md from a run directory alone.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/report)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("train", help="train one width configuration",
                       description="Train one configuration; writes OUT/checkpoint.pt and OUT/summary.json.")
    p.add_argument("--in-channels", type=int, default=None, help="check the data set has this many channels")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    add_common_flags(p)
    add_config_flags(p, TRAIN_ONLY)
    p.set_defaults(func=cmd_train)
    return parser


def add_common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.add_argument("--log-json", action="store_true", help="log lines as JSON objects (for scripts)")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args)
    # SIGTERM (a scheduler stopping the job) unwinds like Ctrl-C: finished epochs are on disk.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.func(args)
    except TrainingError as exc:
        print(f"netadjust: error: {exc}", file=sys.stderr)
        return 1
    except NetadjustError as exc:
        print(f"netadjust: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("netadjust: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
