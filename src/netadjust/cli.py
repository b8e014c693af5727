"""The ``netadjust`` command line: it parses flags and calls the library, nothing more.

Each subcommand is a small function from parsed arguments to an exit code. Problems with the
user's input raise :class:`~netadjust.errors.NetadjustError`; ``main`` prints their message
on one line and exits with status 2 (1 when training itself failed). No traceback reaches the
user unless ``--debug`` asks for it. Ctrl-C exits with 130 and SIGTERM with 143, after the
finished epochs are saved.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import typing
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from . import __version__
from .config import PRESETS, SEARCH_FIELDS, TRAIN_FIELDS, SearchConfig, TrainConfig, flag, load_config_file
from .data import dataset_help
from .dist import dist_env, exit_worker, shutdown
from .errors import ConfigError, NetadjustError, TrainingError
from .models import all_options, family_options, get_arch, list_archs
from .widths import load_widths

log = logging.getLogger("netadjust")

# The settings `netadjust train` takes: architecture, data, training, seed and output.
TRAIN_SETTINGS = ("arch", "width_mult", "widths", "dataset", "data_dir", "heldout_fraction", "train_subset",
                  "seed", "out") + TRAIN_FIELDS
DEFAULT_PRESET = "demo"


# -- flags derived from the config dataclasses and the families' options -----------------------
def _setting_spec(name: str) -> tuple[type, Any, str, tuple[Any, ...]]:
    """(type, default, help, choices) of a setting: a config field or a family option."""
    option = all_options().get(name)
    if option is not None:
        return option.type, option.default, option.help, option.choices
    cls = TrainConfig if name in TRAIN_FIELDS else SearchConfig
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    kind = typing.get_type_hints(cls)[name]
    kind = next(a for a in typing.get_args(kind) if a is not type(None)) if typing.get_args(kind) else kind
    text = f.metadata["help"] + (f": {dataset_help()}" if name == "dataset" else "")
    return kind, f.default, text, ()


def add_setting_flags(p: argparse.ArgumentParser, names: Sequence[str], preset: str | None = None) -> None:
    """One flag per setting, defaulting to None so that only what the user typed overrides.

    The help shows the default, and the value the default preset gives where it differs.
    """
    for name in names:
        kind, default, text, choices = _setting_spec(name)
        kwargs: dict[str, Any] = ({"action": argparse.BooleanOptionalAction} if kind is bool else
                                  {"type": kind, "metavar": name.upper()})
        if choices:
            kwargs["choices"] = choices
        shown = [] if default is None else [f"default {default}"]
        if preset and name in PRESETS[preset] and PRESETS[preset][name] != default:
            shown.append(f"{preset} preset: {PRESETS[preset][name]}")
        p.add_argument(flag(name), dest=name, default=None, help=text + (f" ({'; '.join(shown)})" if shown else ""),
                       **kwargs)


def config_from_args(args: argparse.Namespace, names: Sequence[str]) -> SearchConfig:
    """Defaults < preset < config file < flags."""
    values: dict[str, Any] = dict(PRESETS[args.preset]) if getattr(args, "preset", None) else {}
    if getattr(args, "config", None):
        values.update(load_config_file(args.config))
    values.update({n: getattr(args, n) for n in names if getattr(args, n) is not None})
    return SearchConfig.from_dict(values, source="flags")


def typed_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {n: getattr(args, n) for n in (*SEARCH_FIELDS, *TRAIN_FIELDS, *all_options())
            if getattr(args, n, None) is not None}


# -- netadjust models / datasets / flops ---------------------------------------------------
def cmd_datasets(args: argparse.Namespace) -> int:
    print(dataset_help(details=True))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    archs = list_archs()
    width = max(map(len, archs))
    for name, desc in archs.items():
        print(f"{name:<{width}}  {desc}")
    print("\nor a model of your own: --arch torchvision:NAME, timm:NAME or package.module:factory "
          "(README: Searching your own model)")
    return 0


def add_arch_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("architecture")
    g.add_argument("--arch", default="resnet20", help="model family (see `netadjust models`) or a model of your own: torchvision:NAME, "
                   "timm:NAME, package.module:factory (default %(default)s)")
    g.add_argument("--num-classes", type=int, default=None, help="classes of the classifier (default: the family's)")
    g.add_argument("--in-channels", type=int, default=None, help="input channels (default: the family's, 3)")
    g.add_argument("--input-size", type=int, default=None,
                   help="input height = width in pixels (default: the family's: 32 for CIFAR nets, 224 for ImageNet nets)")
    add_setting_flags(g, ("width_mult", *all_options(), "widths"))


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
        "params": arch.params(widths),
        "layers": [{"name": layer.name, "cin": layer.cin, "cout": layer.cout, "macs": layer.macs,
                    "params": layer.params, "searchable": layer.name in widths,
                    "dmacs_dc": deriv.get(layer.name)} for layer in layers],
        "keys": [{"key": key, "width": widths[key], "dmacs_dc": deriv[key], "step": step}
                 for key, step in arch.width_steps().items()],
    }


def cmd_flops(args: argparse.Namespace) -> int:
    geometry = {k: getattr(args, k) for k in ("num_classes", "in_channels", "input_size") if getattr(args, k) is not None}
    if args.width_mult is not None:
        geometry["width_mult"] = args.width_mult
    arch = get_arch(args.arch, **geometry, **family_options(vars(args)))
    report = flops_report(arch, arch.validate(load_widths(args.widths)) if args.widths else arch.default_widths())
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
    steps = [f"{row['key']} x{row['step']}" for row in report["keys"] if row["step"] > 1]
    if steps:
        print(f"\nwidths that move in steps (grouped convs keep their groups, channel splits stay even): {', '.join(steps)}")
    print(f"total: {report['macs']:,} MACs ({report['macs'] / 1e6:.2f}M; "
          f"{report['macs_without_stem'] / 1e6:.2f}M without the stem), {report['params']:,} params "
          f"({report['params'] / 1e6:.2f}M)")
    return 0


# -- netadjust search / train / report --------------------------------------------------------
def widths_table(before: dict[str, int], after: dict[str, int]) -> str:
    width = max(map(len, before))
    lines = [f"{'layer':<{width}}  {'before':>6}  {'after':>6}  {'change':>7}"]
    for key in before:
        d = after[key] - before[key]
        lines.append(f"{key:<{width}}  {before[key]:>6}  {after[key]:>6}  {f'{d:+d}' if d else '':>7}")
    return "\n".join(lines)


def search_config(args: argparse.Namespace) -> SearchConfig:
    """The settings of ``netadjust search``: a new run's, or the stored ones of ``--resume``."""
    if not args.resume:
        args.preset = args.preset or DEFAULT_PRESET
        return config_from_args(args, (*SEARCH_FIELDS, *TRAIN_FIELDS, *all_options()))
    given = [name for name, value in (("--config", args.config), ("--preset", args.preset), ("--out", args.out))
             if value is not None]
    if given:
        raise ConfigError(f"--resume {args.resume} continues that run with its stored settings (its config.json); "
                          f"{' and '.join(given)} cannot be combined with it: drop {'them' if len(given) > 1 else 'it'}, "
                          f"or pass changed settings as flags with --allow-changes")
    from .rundir import RunDir

    stored = RunDir(args.resume).read_config()
    return SearchConfig.from_dict({**stored, **typed_settings(args), "out": args.resume},
                                  source=f"{args.resume}/config.json")


def cmd_search(args: argparse.Namespace) -> int:
    from .search import search

    cfg = search_config(args)
    log.info("%s: %d rounds of %d epochs on %s, final %d epochs x %d seed(s) -> %s",
             f"preset {args.preset}" if not args.resume else "resuming", cfg.rounds, cfg.train.epochs, cfg.dataset,
             cfg.final_epochs, cfg.final_seeds, cfg.out)
    try:
        result = search(cfg, resume=bool(args.resume), overwrite=args.overwrite, allow_changes=args.allow_changes,
                        progress=not args.quiet)
    except KeyboardInterrupt as exc:
        print(f"netadjust: {_stopped(exc)}; the finished epochs are saved in {cfg.out}. Resume with:\n"
              f"  netadjust search --resume {cfg.out}", file=sys.stderr)
        return _exit_code(exc)
    s = result.summary
    print(widths_table(result.widths_original, result.widths_final))
    print(f"MACs: original {s.macs_original:,}  searched {s.macs_final:,}  "
          f"({(s.macs_final - s.macs_original) / s.macs_original:+.2%})")
    if s.searched_test_acc is not None:
        seeds = len(s.final_seeds or [0])
        spread = (f" (mean of {seeds} seeds; paired difference 95% CI [{100 * s.test_acc_gain_ci95[0]:+.2f}, "
                  f"{100 * s.test_acc_gain_ci95[1]:+.2f}])" if s.test_acc_gain_ci95 else "")
        print(f"test accuracy after {s.final_epochs} epochs: original {100 * s.original_test_acc:.2f}%  "
              f"searched {100 * s.searched_test_acc:.2f}%  ({100 * s.test_acc_gain:+.2f} points){spread}")
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


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export, load_trained, trained_file

    path = trained_file(args.run_dir, args.which, args.seed)
    model, meta = load_trained(path)
    error = export(model, meta, args.out, args.format)
    checked = f"; logits match PyTorch's (relative error {error:.1e})" if args.format != "state-dict" else ""
    print(f"{args.out}: {args.format} of {path} ({meta['macs']:,} MACs, {meta['params']:,} params){checked}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .single import train_single

    if args.out is None:
        args.out = "runs/train"
    cfg = config_from_args(args, (*TRAIN_SETTINGS, *all_options()))
    summary = train_single(cfg, overwrite=args.overwrite, progress=not args.quiet, in_channels=args.in_channels)
    print(f"test {100 * summary['test_acc']:.2f}%  held-out {100 * summary['heldout_acc']:.2f}%  "
          f"MACs {summary['macs']:,}  params {summary['params']:,}  {summary['seconds']:.1f}s  -> {cfg.out}")
    return 0


# -- the parser ---------------------------------------------------------------------------------
def add_debug_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")


def add_common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.add_argument("--log-json", action="store_true", help="log lines as JSON objects (for scripts)")
    add_debug_flag(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netadjust", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"netadjust {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list the model families")
    add_debug_flag(p)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("datasets", help="list the data sets and where their files come from")
    add_debug_flag(p)
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("flops", help="exact MACs, params and dMACs/dc per layer of a configuration")
    add_arch_flags(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_debug_flag(p)
    p.set_defaults(func=cmd_flops)

    p = sub.add_parser("search", help="search the widths of a network at a MACs budget",
                       description="Network adjustment: train, estimate FUR, adjust widths, restore the budget; "
                                   "repeat for --rounds, then optionally retrain and compare (--final-epochs).")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help=f"a group of defaults: demo (quick digits search) or paper (official schedule); "
                        f"default {DEFAULT_PRESET}")
    p.add_argument("--config", metavar="FILE", help="JSON or TOML file of settings (flags override it)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted search in RUN_DIR")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory (a run's only)")
    p.add_argument("--allow-changes", action="store_true", help="with --resume: accept flags that change the stored settings")
    p.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                   help="write RUN_DIR/report (plots + markdown) at the end (default on)")
    add_common_flags(p)
    add_setting_flags(p, (*SEARCH_FIELDS, *TRAIN_FIELDS, *all_options()), DEFAULT_PRESET)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("report", help="plots and a markdown summary of a run directory",
                       description="Write PNG plots and report.md from a run directory alone.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/report)")
    add_debug_flag(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="write a run's trained network as ONNX, TorchScript or a state dict",
                       description="Export the final retraining of a search (or the network of `netadjust train`), "
                                   "with its widths and settings as metadata; ONNX and TorchScript files are run "
                                   "after writing and their logits checked against PyTorch's.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--which", choices=("searched", "original"), default="searched",
                   help="which final retraining of a search (default %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="its seed (default: the run's first)")
    p.add_argument("--format", choices=("onnx", "torchscript", "state-dict"), default="onnx",
                   help="default %(default)s (needs the export extra: onnx, onnxscript, onnxruntime)")
    p.add_argument("--out", required=True, help="the file to write")
    add_debug_flag(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("train", help="train one width configuration",
                       description="Train one configuration; writes OUT/config.json, OUT/checkpoint.pt and "
                                   "OUT/summary.json.")
    p.add_argument("--in-channels", type=int, default=None, help="check the data set has this many channels")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory (a run's only)")
    add_common_flags(p)
    add_setting_flags(p, (*TRAIN_SETTINGS, *all_options()))
    p.set_defaults(func=cmd_train)
    return parser


# -- running a command ----------------------------------------------------------------------------
class JsonFormatter(logging.Formatter):
    """One JSON object per log line, for scripts (--log-json)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": record.created, "level": record.levelname, "logger": record.name,
                           "message": record.getMessage()})


@contextlib.contextmanager
def cli_logging(args: argparse.Namespace) -> Iterator[None]:
    """Log to this command's stderr for its duration, then restore what was there before (a
    handler left behind would write to a stream that may be closed by then)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if getattr(args, "log_json", False) else logging.Formatter("%(message)s"))
    root.handlers = [handler]
    root.setLevel(logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
    try:
        yield
    finally:
        root.handlers, level = saved
        root.setLevel(level)
        handler.close()


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwound like Ctrl-C so that the finished epochs are on disk."""


def _terminate(signum, frame):
    raise Terminated


def _stopped(exc: KeyboardInterrupt) -> str:
    return "terminated" if isinstance(exc, Terminated) else "interrupted"


def _exit_code(exc: KeyboardInterrupt) -> int:
    """128 + the signal's number, as shells report a process the signal ended."""
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    with cli_logging(args):
        try:
            code = args.func(args)
            shutdown()
            return code
        except (TrainingError, NetadjustError) as exc:
            if args.debug:
                raise
            print(f"netadjust: error: {exc}", file=sys.stderr)
            return 1 if isinstance(exc, TrainingError) else 2
        except KeyboardInterrupt as exc:
            print(f"netadjust: {_stopped(exc)}", file=sys.stderr)
            return _exit_code(exc)
        except BrokenPipeError:  # output piped into `head` and the like
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
            return 0
        except Exception as exc:  # a bug: one line, the traceback under --debug
            if args.debug:
                raise
            print(f"netadjust: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                  file=sys.stderr)
            return 1


def entry() -> NoReturn:
    """The ``netadjust`` program: :func:`main`, then exit with its code (a torchrun worker
    through :func:`~netadjust.dist.exit_worker`, which no teardown race can abort)."""
    code = main()
    if dist_env().enabled:
        exit_worker(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
