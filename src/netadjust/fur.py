"""FLOPs utilization ratio (FUR) of every searchable layer, by channel dropout on held-out data.

FUR_l = dAcc/dFLOPs along c_l (docs/method.md#fur). It is estimated by removing the same
expected MACs from one layer at a time and measuring how much the held-out loss rises:

- ``cost_l = c_l * dMACs/dc_l`` is what layer l's channels cost (the layer and its readers);
- the drop rate is ``p_l = base_drop_rate * mean_k(cost_k) / cost_l`` (clipped below 1 with a
  warning: the official code never clips), so each probe removes ``base_drop_rate`` of an
  average layer's MACs in expectation;
- with the model in eval mode and only probe l active, ``FUR_l`` is the mean over ``repeats``
  passes of (cross-entropy with the drop - cross-entropy without), on the same batches.

Two modes compute the same estimator (docs/method.md#estimator-modes), one function each:

- ``reference`` (:func:`reference_losses`): the official scheme, ``repeats`` full forward
  passes over the held-out split per layer;
- ``fast`` (default, :func:`fast_losses`): each batch's activations entering every segment of
  the net are computed once; each probe then runs only the segments from its own onwards, with
  its ``repeats`` stacked into one larger batch.

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

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import DataSource
from .dist import DistEnv, all_gather_objects
from .models import Arch, Probes, SegmentedNet
from .stats import mean_stderr

log = logging.getLogger(__name__)

MAX_DROP_RATE = 0.9
Batches = Sequence[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class FurResult:
    fur: dict[str, float]  # mean held-out loss increase per key (nats)
    stderr: dict[str, float]  # standard error of that mean over the repeats
    drop_rate: dict[str, float]  # p_l used per key
    clipped: list[str]  # keys whose p_l was clipped to MAX_DROP_RATE
    base_loss: float  # held-out loss without any drop
    seconds: float
    # Per key and channel: the mean over held-out samples of the squared first-order change of a
    # sample's loss when that channel is removed, (activation * gradient summed over space)^2.
    # A by-product of the control variate's backward pass (fast mode with control variate only).
    channel_importance: dict[str, list[float]] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def drop_rates(arch: Arch, widths: Mapping[str, int], base_drop_rate: float, max_rate: float = MAX_DROP_RATE,
               derivative: Mapping[str, float] | None = None) -> tuple[dict[str, float], list[str]]:
    """FLOPs-normalised drop rate of every key, and the keys that had to be clipped to ``max_rate``.
    ``derivative``: the cost of one more channel per key in another unit (latency: ``--fur-cost
    latency``) instead of the MACs derivative."""
    deriv = derivative if derivative is not None else arch.macs_derivative(widths)
    cost = {k: widths[k] * deriv[k] for k in widths}
    mean_cost = sum(cost.values()) / len(cost)
    rates = {k: base_drop_rate * mean_cost / cost[k] for k in widths}
    clipped = [k for k, p in rates.items() if p > max_rate]
    if clipped:
        log.warning("FUR: drop rate clipped to %.2f for %d layer(s) whose channels cost little "
                    "(%s); lower --base-drop-rate to avoid it", max_rate, len(clipped), ", ".join(clipped))
    return {k: min(p, max_rate) for k, p in rates.items()}, clipped


def _summed_loss(model: SegmentedNet, batches: Batches) -> torch.Tensor:
    return sum(F.cross_entropy(model(x), y, reduction="sum").double() for x, y in batches)


@torch.no_grad()
def reference_losses(model: SegmentedNet, probes: Probes, batches: Batches, keys: Sequence[str],
                     rates: Mapping[str, float], repeats: int, *, progress: bool = False
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The official scheme: a full pass over ``batches`` per key and repeat.

    Returns the summed loss without drop, and per key the summed loss of each repeat with that
    key's probe dropping at its rate (a ``(repeats,)`` tensor).
    """
    base = _summed_loss(model, batches)
    sums = {}
    for key in tqdm(keys, desc="FUR", leave=False, disable=None if progress else True):
        with probes.active(key, rates[key]):
            sums[key] = torch.stack([_summed_loss(model, batches) for _ in range(repeats)])
    return base, sums


def _first_order_slopes(losses: torch.Tensor, activations: dict[str, list[torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per sample and channel, sum over space of activation * d(own loss)/d(activation): (B, C),
    summed over the key's probe sites (a traced model's key may have several, one mask for all).

    In eval mode each sample's loss depends on its own activations only, so one backward pass
    of the summed loss gives every sample's gradient at every probe at once.
    """
    sites = [(key, a) for key, acts in activations.items() for a in acts]
    grads = torch.autograd.grad(losses.sum(), [a for _, a in sites], allow_unused=True)
    out = {key: torch.zeros(acts[0].shape[:2], device=acts[0].device) for key, acts in activations.items()}
    for (key, a), grad in zip(sites, grads):
        if grad is not None:
            out[key] = out[key] + (a.detach() * grad).reshape(a.shape[0], a.shape[1], -1).sum(2)
    return out


@torch.no_grad()
def fast_losses(model: SegmentedNet, probes: Probes, batches: Batches, keys: Sequence[str],
                rates: Mapping[str, float], repeats: int, *, control_variate: bool = True, progress: bool = False,
                importance: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """What :func:`reference_losses` returns, computed segment-wise with the repeats stacked;
    ``control_variate`` subtracts each sample's zero-mean first-order loss change. With the
    control variate, ``importance`` (a dict) receives per key the summed squared first-order
    change of each channel's removal over the samples: ``(B, C)`` slopes squared, summed over B."""
    segment_of = model.probe_segments()
    segments = list(model.segments)
    device = batches[0][0].device if batches else torch.device("cpu")
    base = torch.zeros((), dtype=torch.float64, device=device)
    sums = {key: torch.zeros(repeats, dtype=torch.float64, device=device) for key in keys}
    with probes.tracing(keys) as traces:
        for x, y in tqdm(batches, desc="FUR", leave=False, disable=None if progress else True):
            with torch.set_grad_enabled(control_variate):
                inputs = [x]  # inputs[i]: activations entering segment i
                for segment in segments:
                    inputs.append(segment(inputs[-1]))
                losses = F.cross_entropy(inputs[-1], y, reduction="none")
                if control_variate:
                    slopes = _first_order_slopes(losses, {key: traces[key].activations for key in keys})
                    if importance is not None:
                        for key in keys:
                            square = slopes[key].double().square().sum(0)
                            importance[key] = importance[key] + square if key in importance else square
            base += losses.sum().detach().double()
            inputs = [h.detach() for h in inputs]
            targets = y.repeat(repeats)
            for key in keys:
                i = segment_of[key]
                h = inputs[i].repeat((repeats,) + (1,) * (inputs[i].dim() - 1))  # (R*B, ...)
                with probes.active(key, rates[key]):
                    for segment in segments[i:]:
                        h = segment(h)
                dropped = F.cross_entropy(h, targets, reduction="none").view(repeats, len(y))
                if control_variate:
                    # Subtract the first-order change, sum_c (m_c / (1 - p) - 1) * slope_c: zero
                    # in expectation, so the mean is unchanged, but most of the noise goes.
                    mask = traces[key].mask.view(repeats, len(y), -1)
                    dropped = dropped - ((mask - 1) * slopes[key]).sum(-1)
                sums[key] += dropped.sum(1).double()
    return base, sums


def random_scores(widths: Mapping[str, int], *, seed: int, base_loss: float) -> FurResult:
    """Scores drawn uniformly at random in place of FUR (``--guide random``): the adjustment
    rule then widens and narrows random layers, with the same k, steps and budget restore.
    Nothing is dropped (rates 0); ``base_loss`` is recorded as given. The search passes
    ``round_seed(--seed, t)``."""
    gen = torch.Generator().manual_seed(seed % 2**63)
    scores = torch.rand(len(widths), generator=gen, dtype=torch.float64).tolist()
    zeros = {k: 0.0 for k in widths}
    return FurResult(dict(zip(widths, scores)), zeros, dict(zeros), [], base_loss, 0.0)


@torch.no_grad()
def estimate_fur(model: SegmentedNet, data: DataSource, arch: Arch, widths: Mapping[str, int], *,
                 base_drop_rate: float = 0.05, repeats: int = 5, batch_size: int = 256, mode: str = "fast",
                 device: torch.device = torch.device("cpu"), seed: int = 0, split: str = "heldout",
                 control_variate: bool = True, env: DistEnv = DistEnv(), progress: bool = False,
                 cost_derivative: Mapping[str, float] | None = None) -> FurResult:
    """FUR of every searchable layer of the trained ``model`` (built from ``arch`` at ``widths``).

    ``mode``: "fast" or "reference"; ``control_variate`` applies to the fast mode (see the
    module docstring). ``cost_derivative``: normalise the drop rates by this per-channel cost
    instead of MACs (:func:`drop_rates`).
    """
    if mode not in ("fast", "reference"):
        raise ValueError(f"unknown FUR mode {mode!r}")
    start = time.perf_counter()
    rates, clipped = drop_rates(arch, widths, base_drop_rate, derivative=cost_derivative)
    model.to(device).eval()
    probes = Probes(model)
    mine = list(widths)[env.rank::env.world_size]  # this rank's share of the keys
    batches = list(data.batches(split, batch_size=batch_size, train=False, device=device))
    count = sum(len(y) for _, y in batches)
    importance: dict[str, torch.Tensor] | None = {} if mode == "fast" and control_variate else None
    with probes.off(), probes.streams(seed, device):
        if mode == "reference":
            base, sums = reference_losses(model, probes, batches, mine, rates, repeats, progress=progress)
        else:
            base, sums = fast_losses(model, probes, batches, mine, rates, repeats, control_variate=control_variate,
                                     progress=progress, importance=importance)
    base_loss = base.item() / count
    local = {key: (*mean_stderr((sums[key] / count - base_loss).tolist()),
                   None if importance is None else (importance[key] / count).tolist()) for key in mine}
    merged = {k: v for part in all_gather_objects(local) for k, v in part.items()}
    fur = {key: merged[key][0] for key in widths}
    stderr = {key: merged[key][1] for key in widths}
    channels = None if importance is None else {key: merged[key][2] for key in widths}
    return FurResult(fur, stderr, rates, clipped, base_loss, time.perf_counter() - start, channels)
