"""FLOPs utilization ratio (FUR) of every searchable layer, by channel dropout on held-out data.

FUR_l = dAcc/dFLOPs along c_l (DESIGN.md §2). It is estimated by removing the same expected
MACs from one layer at a time and measuring how much the held-out loss rises:

- ``cost_l = c_l * dMACs/dc_l`` is what layer l's channels cost (the layer and its readers);
- the drop rate is ``p_l = base_drop_rate * mean_k(cost_k) / cost_l`` (clipped below 1 with a
  warning: the official code never clips), so each probe removes ``base_drop_rate`` of an
  average layer's MACs in expectation;
- with the model in eval mode and only probe l active, ``FUR_l`` is the mean over ``repeats``
  passes of (cross-entropy with the drop - cross-entropy without), on the same batches.

Two modes compute the same estimator:

- ``reference``: the official scheme, ``repeats`` full forward passes over the held-out split
  per layer;
- ``fast`` (default): each batch's activations entering every segment of the net are computed
  once; each probe then runs only the segments from its own onwards, with its ``repeats``
  stacked into one larger batch.

The fast mode also lowers the noise of the estimate with a control variate. To first order,
dropping channels with mask ``m`` (scaled by ``1 / (1 - p)``) changes a sample's loss by
``sum_c (m_c / (1 - p) - 1) * s_c``, with ``s_c`` the channel's activation times the loss
gradient, summed over space. That term has expectation exactly zero, because
``E[m_c / (1 - p)] = 1``: FUR is a second-order effect, and the first-order term is pure noise.
Subtracting it from every measured change keeps the estimator unbiased while removing that
term's variance (most of the noise where the loss changes nearly linearly with the mask; little
where losing whole channels has large higher-order effects, see bench/RESULTS_fur.md); one
backward pass per held-out batch gives ``s`` for every layer at once.

Each key draws its masks from its own generator seeded from (seed, key index), so a key's FUR
does not depend on which other keys are probed. Under torchrun the keys are dealt out to the
ranks and the results gathered: every rank ends with the same, world-size-independent vector.
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import DataSource
from .dist import DistEnv, all_gather_objects
from .models import Arch, SegmentedNet
from .train import probes_off

log = logging.getLogger(__name__)

MAX_DROP_RATE = 0.9


@dataclass
class FurResult:
    fur: dict[str, float]  # mean held-out loss increase per key (nats)
    stderr: dict[str, float]  # standard error of that mean over the repeats
    drop_rate: dict[str, float]  # p_l used per key
    clipped: list[str]  # keys whose p_l was clipped to MAX_DROP_RATE
    base_loss: float  # held-out loss without any drop
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def drop_rates(arch: Arch, widths: Mapping[str, int], base_drop_rate: float,
               max_rate: float = MAX_DROP_RATE) -> tuple[dict[str, float], list[str]]:
    """FLOPs-normalised drop rate of every key, and the keys that had to be clipped to ``max_rate``."""
    deriv = arch.macs_derivative(widths)
    cost = {k: widths[k] * deriv[k] for k in widths}
    mean_cost = sum(cost.values()) / len(cost)
    rates = {k: base_drop_rate * mean_cost / cost[k] for k in widths}
    clipped = [k for k, p in rates.items() if p > max_rate]
    if clipped:
        log.warning("FUR: drop rate clipped to %.2f for %d layer(s) whose channels cost little "
                    "(%s); lower --base-drop-rate to avoid it", max_rate, len(clipped), ", ".join(clipped))
    return {k: min(p, max_rate) for k, p in rates.items()}, clipped


def _first_order_slopes(losses: torch.Tensor, activations: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per sample and channel, sum over space of activation * d(own loss)/d(activation): (B, C).

    In eval mode each sample's loss depends on its own activations only, so one backward pass
    of the summed loss gives every sample's gradient at every probe at once.
    """
    keys = list(activations)
    grads = torch.autograd.grad(losses.sum(), [activations[k] for k in keys], allow_unused=True)
    out = {}
    for key, grad in zip(keys, grads):
        a = activations[key].detach()
        out[key] = torch.zeros(a.shape[:2], device=a.device) if grad is None else (a * grad).flatten(2).sum(2)
    return out


def _summarise(per_repeat: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error of per-repeat loss increases."""
    values = per_repeat.tolist()
    mean = statistics.fmean(values)
    err = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, err


@torch.no_grad()
def estimate_fur(model: SegmentedNet, data: DataSource, arch: Arch, widths: Mapping[str, int], *,
                 base_drop_rate: float = 0.05, repeats: int = 5, batch_size: int = 256, mode: str = "fast",
                 device: torch.device = torch.device("cpu"), seed: int = 0, split: str = "heldout",
                 control_variate: bool = True, env: DistEnv = DistEnv(), progress: bool = False) -> FurResult:
    """FUR of every searchable layer of the trained ``model`` (built from ``arch`` at ``widths``).

    ``control_variate`` (fast mode): subtract each sample's first-order loss change, which has
    mean zero under the dropout mask, from its measured change (see the module docstring).
    """
    start = time.perf_counter()
    rates, clipped = drop_rates(arch, widths, base_drop_rate)
    model.to(device).eval()
    probes = model.probes()
    mine = list(widths)[env.rank::env.world_size]  # this rank's share of the keys
    for i, key in enumerate(widths):
        probes[key].generator = torch.Generator(device).manual_seed(seed * 100_003 + i)
    batches = list(data.batches(split, batch_size=batch_size, train=False, device=device))
    count = sum(len(y) for _, y in batches)
    # sums[key][r]: summed loss over the split of repeat r with probe `key` active.
    sums = {key: torch.zeros(repeats, dtype=torch.float64, device=device) for key in mine}
    base = torch.zeros((), dtype=torch.float64, device=device)
    with probes_off(model):
        if mode == "reference":
            base += sum(F.cross_entropy(model(x), y, reduction="sum").double() for x, y in batches)
            for key in tqdm(mine, desc="FUR", leave=False, disable=None if progress else True):
                probes[key].p = rates[key]
                for r in range(repeats):
                    sums[key][r] = sum(F.cross_entropy(model(x), y, reduction="sum").double() for x, y in batches)
                probes[key].p = 0.0
        elif mode == "fast":
            segment_of = model.probe_segments()
            segments = list(model.segments)
            for x, y in tqdm(batches, desc="FUR", leave=False, disable=None if progress else True):
                with torch.enable_grad() if control_variate else contextlib.nullcontext():
                    for key in mine:
                        probes[key].trace = {}
                    inputs = [x]  # inputs[i]: activations entering segment i
                    for segment in segments:
                        inputs.append(segment(inputs[-1]))
                    losses = F.cross_entropy(inputs[-1], y, reduction="none")
                    if control_variate:
                        slopes = _first_order_slopes(losses, {key: probes[key].trace["activation"] for key in mine})
                base += losses.sum().detach().double()
                inputs = [h.detach() for h in inputs]
                targets = y.repeat(repeats)
                for key in mine:
                    i = segment_of[key]
                    h = inputs[i].repeat((repeats,) + (1,) * (inputs[i].dim() - 1))  # (R*B, ...)
                    probes[key].p = rates[key]
                    for segment in segments[i:]:
                        h = segment(h)
                    probes[key].p = 0.0
                    dropped = F.cross_entropy(h, targets, reduction="none").view(repeats, len(y))
                    if control_variate:
                        # Subtract the first-order change, sum_c (m_c / (1 - p) - 1) * slope_c: zero
                        # in expectation, so the mean is unchanged, but most of the noise goes.
                        mask = probes[key].trace["mask"].view(repeats, len(y), -1)
                        dropped = dropped - ((mask - 1) * slopes[key]).sum(-1)
                    sums[key] += dropped.sum(1).double()
            for key in mine:
                probes[key].trace = None
        else:
            raise ValueError(f"unknown FUR mode {mode!r}")
    for probe in probes.values():
        probe.generator = None
    base_loss = base.item() / count
    local = {key: _summarise(sums[key] / count - base_loss) for key in mine}
    merged = {k: v for part in all_gather_objects(local) for k, v in part.items()}
    fur = {key: merged[key][0] for key in widths}
    stderr = {key: merged[key][1] for key in widths}
    return FurResult(fur, stderr, rates, clipped, base_loss, time.perf_counter() - start)
