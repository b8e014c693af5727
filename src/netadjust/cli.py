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
import sys
from collections.abc import Sequence

from . import __version__
from .errors import NetadjustError, TrainingError
from .models import get_arch, list_archs
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
    g.add_argument("--residual", choices=("max", "local"), default=None,
                   help="CIFAR ResNet: stream width when a block narrows it (default max)")
    g.add_argument("--widths", metavar="FILE", default=None, help="JSON file of layer key -> channels (default: initial widths)")


def arch_from_args(args: argparse.Namespace, *, num_classes: int = 10, in_channels: int = 3, input_size: int = 32):
    """The Arch the flags describe; data-set values fill what the flags leave open."""
    options = {} if args.residual is None else {"residual": args.residual}
    def pick(flag, fallback):
        return fallback if flag is None else flag

    return get_arch(args.arch,
                    num_classes=pick(args.num_classes, num_classes),
                    in_channels=pick(args.in_channels, in_channels),
                    input_size=pick(args.input_size, input_size),
                    width_mult=args.width_mult, **options)


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
    print(f"total: {report['macs']:,} MACs ({report['macs'] / 1e6:.2f}M; "
          f"{report['macs_without_stem'] / 1e6:.2f}M without the stem), {report['params']:,} params "
          f"({report['params'] / 1e6:.2f}M)")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
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
