"""Channel groups of any model: netadjust's torch.fx tracer beside Torch-Pruning's DependencyGraph.

For every model at hand (the structural patterns of ``tests/user_models.py`` everywhere,
torchvision's where it imports), both tools trace the model and group the conv / linear layers
whose output channels are coupled (one group = one width). The script reports the time each
takes, how many groups each finds, whether the groups are the same sets of layers, and checks
netadjust's MACs against ``FlopCounterMode`` on the built model. Torch-Pruning only removes
channels; the comparison is of the grouping, which netadjust needs to widen too.

    python bench/bench_tracers.py [--note TEXT]    # writes bench/RESULTS_tracers.md

``--note`` adds a line to the results' header (how the packages were installed, say).

Needs ``torch-pruning`` (the ``bench`` extra).
"""

from __future__ import annotations

import datetime as dt
import platform
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))

import user_models  # noqa: E402

from netadjust.models import get_arch  # noqa: E402

TORCHVISION = ("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "regnet_x_400mf",
               "densenet121", "shufflenet_v2_x1_0", "resnext50_32x4d")
SIZE = 64  # px: enough for every model's downsampling, quick on a CPU


def ours(spec: str) -> tuple[float, set[frozenset[str]], int, bool, list[str]]:
    """Trace time, groups (sets of conv/linear paths writing one width), keys, MACs exact, warnings."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arch = get_arch(spec, num_classes=10, input_size=SIZE)
    seconds = time.perf_counter() - start
    g = arch.graph
    groups: dict[int, set[str]] = {}
    for use in g.convs:
        _, terms = g.free_terms(use.cout)
        if len(terms) == 1:
            groups.setdefault(next(iter(terms)), set()).add(use.path)
    model = arch.build().eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, arch.in_channels, SIZE, SIZE))
    exact = counter.get_total_flops() == 2 * arch.macs(arch.default_widths())
    return seconds, {frozenset(s) for s in groups.values()}, len(arch.keys()), exact, [str(w.message) for w in caught]


def torch_pruning_groups(module: nn.Module) -> tuple[float, set[frozenset[str]]]:
    """Build time of Torch-Pruning's DependencyGraph and its groups of conv/linear output channels,
    the classifier's output excluded (as netadjust fixes it)."""
    import torch_pruning as tp

    names = {m: n for n, m in module.named_modules()}
    classifier = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][-1]
    start = time.perf_counter()
    graph = tp.DependencyGraph().build_dependency(module, example_inputs=torch.randn(1, 3, SIZE, SIZE))
    groups = set()
    for group in graph.get_all_groups(root_module_types=[nn.Conv2d, nn.Linear]):
        layers = {dep.target.module for dep, _ in group
                  if dep.handler.__name__ == "prune_out_channels" and isinstance(dep.target.module, (nn.Conv2d, nn.Linear))}
        if layers and classifier not in layers:
            groups.add(frozenset(names[m] for m in layers))
    return time.perf_counter() - start, groups


def models() -> list[tuple[str, nn.Module]]:
    out = [(f"user_models:{name}", getattr(user_models, name)(num_classes=10)) for name in user_models.PATTERNS]
    try:
        import torchvision.models as tv
    except Exception as exc:  # a torchvision built for another torch fails with RuntimeError
        print(f"torchvision does not import ({type(exc).__name__}); its models are left out", file=sys.stderr)
        return out
    return out + [(f"torchvision:{name}", tv.get_model(name, weights=None, num_classes=10)) for name in TORCHVISION]


def main() -> None:
    import argparse

    import torch_pruning

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--note", default="", help="a line for the results' header")
    args = parser.parse_args()

    rows = []
    for spec, module in models():
        t_ours, g_ours, keys, exact, caught = ours(spec)
        try:
            t_tp, g_tp = torch_pruning_groups(module.eval())
        except Exception as exc:  # noqa: BLE001 - a failure is a result here
            tp_cells = f"fails: `{type(exc).__name__}: {exc}` | - | -"
        else:
            same = "yes" if g_ours == g_tp else f"no ({len(g_ours - g_tp)} / {len(g_tp - g_ours)})"
            tp_cells = f"{len(g_tp)} | {same} | {t_tp:.2f}"
        rows.append(f"| `{spec}` | {keys} | {len(g_ours)} | {tp_cells.split(' | ')[0]} | {tp_cells.split(' | ')[1]} "
                    f"| {t_ours:.2f} | {tp_cells.split(' | ')[2]} | {'yes' if exact else 'NO'} | {len(caught)} |")
        print(rows[-1], flush=True)
    text = "\n".join([
        "# Channel groups: netadjust's tracer and Torch-Pruning's DependencyGraph", "",
        f"`python bench/bench_tracers.py`, {dt.date.today()}, {platform.node() or 'this machine'} "
        f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), torch {torch.__version__}, "
        f"torch-pruning {getattr(torch_pruning, '__version__', '?')}; models at {SIZE} px, 10 classes.", "",
        *([args.note, ""] if args.note else []),
        "Groups: sets of conv / linear layers whose output channels are coupled (one width), the classifier "
        "excluded. *Same*: both tools give the same sets (else: groups only netadjust has / only Torch-Pruning has). "
        "Seconds: netadjust's trace (torch.fx + ShapeProp + analysis, the module built by the factory) and "
        "Torch-Pruning's dependency graph with all groups. *MACs exact*: netadjust's count at the traced widths "
        "equals `FlopCounterMode` / 2 on the built model. *Warnings*: netadjust's messages about fixed widths.", "",
        "| model | keys | groups (netadjust) | groups (Torch-Pruning) | same | s (netadjust) | s (Torch-Pruning) "
        "| MACs exact | warnings |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows, ""])
    (HERE / "RESULTS_tracers.md").write_text(text)
    print(f"wrote {HERE / 'RESULTS_tracers.md'}")


if __name__ == "__main__":
    main()
