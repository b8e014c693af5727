"""Resizing a trained network to new widths: one operation for every family.

**Segments.** Each family tags its modules while building (``models/channels.py``), so
:meth:`Arch.channel_map` gives, for every state-dict entry, the channel *space* of each dim:
an ordered tuple of segments ``(name, size, free, inert)``. A segment is named by a width key
or by a derived name: ``stem`` and ``head`` (fixed widths), ``<block>.stream`` (a "max"
residual stream, ``max`` of the stream entering and conv2), ``blocks.{i}.squeeze`` (MnasNet's
``max(1, expand // (4t))``). A space may concatenate segments: a DenseNet reader's input, and
both sides of a transition, are ``stem`` followed by the growth segments in order. Resizing
never looks at a family: it lays the old and the new widths' maps side by side and, per
segment, keeps some old channels (in a chosen order) and appends new ones after them; every
tensor dim in that segment (writers' outputs, BN entries, every reader's input, depthwise and
squeeze-excite convs, the segment's place inside a concatenation) takes the same indices.
Derived segments take their size from the new widths' map and keep a prefix (they are not
free): a squeeze width that follows a narrowed expansion keeps its first channels.

**Free vs prefix.** A segment is ``free`` when any subset of its channels, in any order, can
be kept consistently by every tensor that indexes it without changing what the other channels
compute: a basic block's conv1, a Plain net's conv2, a MobileNet/MnasNet expansion width
(expand, depthwise, SE, the project conv's input), a MobileNet stage width (one key covers the
whole stage stream: its residual adds stay inside that key's channels), a DenseNet growth. A
residual block's conv2 (CIFAR ResNet, both policies; PyramidNet; ImageNet ResNet, with its
projection) adds into the residual stream *by position*: its channel ``i`` lands on stream
channel ``i``, which other blocks also write and read. Moving it would add it to another
stream channel, so such a segment (and the derived streams) only keeps a prefix when narrowed
and grows at its end; a ``keep`` for it that is not ``0 .. n-1`` is refused.

**Inert.** New channels of an ``inert`` segment must output exactly zero: they flow straight
into a residual addition (onto stream channels that existing readers see) or into new stream
channels that later blocks add to by position, with no reader weights in between to silence
them. Their BatchNorm starts at weight 0 and bias 0 (the conv behind it is random, so the BN
weight can learn; see the caveat below). Every other new channel's BN starts at weight 1,
bias 0; all new BN entries have running mean 0 and variance 1.

**Widening initialisation** (new channels appended at the end of their segment, inside the
concatenation for DenseNet): the weights *into* a new channel (the rows of the writer's output
dim, also for a depthwise or SE conv, or a DenseNet transition's new outputs) are He-normal
like the families' initialisation (fan-out), times ``init_scale`` (0.1); every weight *out of*
a new channel (a reader's input dim, the classifier's inputs) is zero, as are new conv/linear
biases. With this the network's eval-mode output is unchanged by any widening, except under
CIFAR ResNet ``--residual local``: there a block's shortcut is truncated to conv2's width,
so widening conv2 of a block whose incoming stream is wider than its old conv2 lets through
stream channels that used to be cut off; no initialisation can cancel them.

**Splitting** (``widen="split"``, Net2Net's function-preserving widening): a free segment's new
channels are instead copies of kept channels drawn at random: each copies its source's incoming
weights, bias and BatchNorm entries (so it computes the same activation), and every reader's
column of the source is split, element by element, into random positive parts (each drawn in
[0.5, 1.5) and normalised to sum to one) shared by the source and its copies. The output is
unchanged, and the unequal parts give the copies different gradients, so they drift apart in
training. Segments that are not free (residual adds by position, derived widths) have no
reader to share with and keep the zero start.

Exactness has a price in training. A new inert channel inside the old stream width gets a
gradient at once (it adds onto a live stream channel). One that also opens a new stream
channel (beyond the width of the stream entering its block) is exactly zero there; in CIFAR and
ImageNet ResNets a ReLU follows the add, and PyTorch's ReLU has zero gradient at 0, so that
channel stays zero in training. PyramidNet (no ReLU after the add) has this only for a new
stream channel beyond the old width of every later stream: it is read by zero weights alone.

**Importance** (:func:`channel_importance`, for choosing ``keep`` when narrowing without
other information): for a free key, channel ``c`` scores ``sum |gamma_c| * ||W_c||_2`` over
the (conv, BatchNorm) pairs that write the key's channels (the network-slimming scale times
the filter norm; MobileNet's expansion: expand and depthwise; a MobileNet stage: each block's
project conv). A DenseNet growth has no BN of its own (pre-activation): its conv's filter norm
is multiplied by the mean ``|gamma_c|`` of the BatchNorms of every later reader (dense layers,
transitions, the head), which is how strongly the readers pass the channel on.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch

from ..errors import ConfigError, closest
from .channels import Entry, Segment, arch_entries, offsets, segments

if TYPE_CHECKING:
    from .base import Arch

INIT_SCALE = 0.1  # new channels' incoming weights: the families' He init times this
WIDEN = ("zero", "split")  # how new channels of a free segment start (see the module docstring)


class Pick(NamedTuple):
    """What one segment becomes: old channel indices in their new order, then ``fresh`` new ones;
    ``sources``: the old channel each new one copies (``widen="split"``), else empty."""

    kept: list[int]
    fresh: int
    sources: list[int]


def resize(arch: Arch, state_dict: Mapping[str, torch.Tensor], old_widths: Mapping[str, int],
           new_widths: Mapping[str, int], keep: Mapping[str, Sequence[int] | torch.Tensor] | None = None,
           generator: torch.Generator | None = None, *, init_scale: float = INIT_SCALE,
           widen: str = "zero") -> dict[str, torch.Tensor]:
    """The state dict for ``arch.build(new_widths)`` made from ``state_dict`` (of
    ``arch.build(old_widths)``).

    ``keep[key]``: the old channel indices a free key keeps, in the order they take (as many as
    ``min(old, new)`` width); default: the first ones. ``widen``: how new channels of a free
    segment start, ``"zero"`` (zero outgoing weights) or ``"split"`` (copies of kept channels
    that share their outgoing weights); other segments always start at zero. Random draws come
    from ``generator`` (default: torch's global one). Tensors come back on their device, in
    their dtype.
    """
    if widen not in WIDEN:
        raise ConfigError(f"widen must be one of {', '.join(WIDEN)}, got {widen!r}")
    old, new = arch.validate(old_widths), arch.validate(new_widths)
    before, after = arch_entries(arch, old), arch_entries(arch, new)
    _check_state(arch, state_dict, before)
    picks = _picks(arch, segments(before), segments(after), keep or {}, widen == "split", generator)
    return {name: _resize(state_dict[name], before[name], entry, picks, generator, init_scale)
            for name, entry in after.items()}


def _check_state(arch: Arch, state_dict: Mapping[str, torch.Tensor], entries: Mapping[str, Entry]) -> None:
    missing = [k for k in entries if k not in state_dict]
    unexpected = [k for k in state_dict if k not in entries]
    wrong = [f"{k} {tuple(state_dict[k].shape)} (expected {e.shape})" for k, e in entries.items()
             if k in state_dict and tuple(state_dict[k].shape) != e.shape]
    if missing or unexpected or wrong:
        problems = (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
        parts = [f"{label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
                 for label, items in problems if items]
        raise ConfigError(f"the state dict is not one of {arch.name} at the old widths: " + "; ".join(parts))


def _picks(arch: Arch, old: Mapping[str, Segment], new: Mapping[str, Segment],
           keep: Mapping[str, Sequence[int] | torch.Tensor], split: bool,
           generator: torch.Generator | None) -> dict[str, Pick]:
    assert list(old) == list(new), "a family's segments must not depend on its widths"
    problems = [f"keep: unknown key {k!r}{closest(str(k), arch.keys())}" for k in keep if k not in arch.keys()]
    picks = {}
    for name, seg in new.items():
        n = min(old[name].size, seg.size)
        kept = list(range(n))
        if name in keep:
            chosen, problem = _indices(name, keep[name], old[name].size, seg)
            if problem:
                problems.append(problem)
            else:
                kept = chosen
        fresh = seg.size - n
        sources = []
        if split and seg.free and fresh and kept:  # each new channel copies a kept one drawn at random
            draw = torch.randint(len(kept), (fresh,), generator=generator, device=_device(generator))
            sources = [kept[i] for i in draw.tolist()]
        picks[name] = Pick(kept, fresh, sources)
    if problems:
        raise ConfigError("; ".join(problems))
    return picks


def _indices(key: str, chosen: Sequence[int] | torch.Tensor, n_old: int, seg: Segment) -> tuple[list[int], str]:
    """``chosen`` as a list of old indices, and what is wrong with it ('' if nothing)."""
    n = min(n_old, seg.size)
    if isinstance(chosen, torch.Tensor):
        if chosen.dim() != 1 or chosen.dtype.is_floating_point or chosen.dtype == torch.bool:
            return [], f"keep[{key!r}] must be a 1-D integer tensor or a sequence of ints"
        chosen = chosen.tolist()
    chosen = list(chosen)
    if not all(isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in chosen):
        return [], f"keep[{key!r}] must hold channel indices (ints)"
    chosen = [int(i) for i in chosen]
    if len(chosen) != n:
        return [], f"keep[{key!r}] has {len(chosen)} indices; {n_old} -> {seg.size} channels keeps {n}"
    if any(not 0 <= i < n_old for i in chosen) or len(set(chosen)) != n:
        return [], f"keep[{key!r}] must be distinct indices in 0..{n_old - 1}, got {chosen}"
    if not seg.free and chosen != list(range(n)):
        return [], (f"keep[{key!r}]: {key} is not free: its channels add into a residual stream by position, "
                    f"so moving one would add it to another stream channel; it can only keep its first {n} "
                    "channels (leave it out of keep)")
    return chosen, ""


def _resize(tensor: torch.Tensor, old: Entry, new: Entry, picks: Mapping[str, Pick],
            generator: torch.Generator | None, init_scale: float) -> torch.Tensor:
    out, fresh, copies = tensor.detach(), {}, {}
    for dim, (old_space, new_space) in enumerate(zip(old.spaces, new.spaces)):
        if new_space is None:
            continue
        start = offsets(old_space)
        src = [i for seg in new_space for i in _sources(picks[seg.name], start[seg.name])]
        src = torch.tensor(src, dtype=torch.long, device=out.device)
        out = out.index_select(dim, src.clamp(min=0))
        fresh[dim] = src < 0
        if dim and any(picks[seg.name].sources for seg in new_space):
            copies[dim] = src
    for dim, src in copies.items():
        out = _share(out, dim, src, generator)
    if not any(mask.any() for mask in fresh.values()):
        return out if fresh else out.clone()
    rows = fresh.get(0, torch.zeros(out.shape[0], dtype=torch.bool, device=out.device))
    if new.kind == "weight":
        # Out of a new channel (its column in a reader): zero. Into one (its row): small He-normal.
        for dim, mask in fresh.items():
            if dim:
                out.masked_fill_(mask.view([-1 if d == dim else 1 for d in range(out.dim())]), 0)
        if rows.any():
            std = init_scale * math.sqrt(2 / (out.shape[0] * math.prod(out.shape[2:])))  # He, fan-out
            out[rows] = _random((int(rows.sum()), *out.shape[1:]), out, generator) * std
    elif new.kind == "bn_weight":
        inert = torch.tensor([seg.inert for seg in new.spaces[0] for _ in range(seg.size)], device=out.device)
        out[rows] = (~inert[rows]).to(out.dtype)
    else:  # conv / linear bias, BN bias and running mean: 0; BN running variance: 1
        out[rows] = 1 if new.kind == "bn_var" else 0
    return out


def _sources(pick: Pick, start: int) -> list[int]:
    """Per channel of a segment in the new network, the old index it is read from (``-1``: a new
    channel that starts from zero outgoing weights)."""
    return [start + j for j in pick.kept + pick.sources] + [-1] * (pick.fresh - len(pick.sources))


def _share(weight: torch.Tensor, dim: int, src: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Split each input column read by several new columns (a kept channel and its copies) into
    random positive parts that add up to it, element by element: the reader's output is
    unchanged, and the copies get different gradients (the split breaks their symmetry)."""
    read, src = src >= 0, src.clamp(min=0)  # -1: a zero-start column, shared with nothing
    size = list(weight.shape)
    size[dim] = int(src.max()) + 1  # one total per old column
    shared = read & (torch.bincount(src[read], minlength=size[dim])[src] > 1)
    shared = shared.view([-1 if d == dim else 1 for d in range(weight.dim())])
    parts = _random(weight.shape, weight, generator, normal=False) + 0.5  # in [0.5, 1.5)
    totals = parts.new_zeros(size).index_add(dim, src, parts * shared)
    return torch.where(shared, weight * parts / totals.index_select(dim, src), weight)


def _random(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None, *,
            normal: bool = True) -> torch.Tensor:
    """Standard normal (or uniform in [0, 1)) numbers from ``generator``, as ``like``'s dtype and device."""
    dtype = like.dtype if like.dtype in (torch.float32, torch.float64) else torch.float32
    draw = torch.randn if normal else torch.rand
    return draw(shape, generator=generator, dtype=dtype, device=_device(generator)).to(like)


def _device(generator: torch.Generator | None) -> torch.device:
    """Where ``generator`` draws (torch's global generator: the CPU)."""
    return generator.device if generator is not None else torch.device("cpu")


def channel_importance(model: torch.nn.Module, arch: Arch, widths: Mapping[str, int]) -> dict[str, torch.Tensor]:
    """Per channel, for every key with a free segment: ``|BN scale| x filter L2 norm`` (see the
    module docstring for the exact rule, DenseNet's included). A 1-D float tensor per key."""
    entries = arch_entries(arch, arch.validate(widths))
    state = {k: v.detach().float() for k, v in model.state_dict().items()}
    _check_state(arch, state, entries)
    # Conv / linear weights and BN weights, in forward order: (entry name, kind, output space).
    tagged = [(name, e.kind, e.spaces[0]) for name, e in entries.items() if e.kind in ("weight", "bn_weight")]
    segs, out = segments(entries), {}
    for key in arch.keys():
        seg = segs[key]
        if not seg.free:
            continue
        own = (seg,)
        # A conv writing exactly this key's channels, and the BN right after it over the same channels.
        pairs = [(w, b) for (w, kind_w, sp_w), (b, kind_b, sp_b) in zip(tagged, tagged[1:])
                 if (kind_w, kind_b) == ("weight", "bn_weight") and sp_w == sp_b == own]
        if pairs:
            out[key] = sum(state[b].abs() * _row_norms(state[w]) for w, b in pairs)
            continue
        writers = [_row_norms(state[w]) for w, kind, sp in tagged if kind == "weight" and sp == own]
        readers = [state[b].narrow(0, offsets(sp)[key], seg.size).abs() for b, kind, sp in tagged
                   if kind == "bn_weight" and sp != own and seg in sp]
        score = torch.stack(writers).mean(0)
        out[key] = score * torch.stack(readers).mean(0) if readers else score
    return out


def _row_norms(weight: torch.Tensor) -> torch.Tensor:
    return weight.flatten(1).norm(dim=1)


def top_channels(importance: Mapping[str, torch.Tensor], new_widths: Mapping[str, int]) -> dict[str, list[int]]:
    """A ``keep`` for :func:`resize`: for every key in ``importance`` that narrows, its
    ``new_widths[key]`` most important channels, in their old order."""
    return {key: sorted(score.topk(new_widths[key]).indices.tolist())
            for key, score in importance.items() if new_widths[key] < len(score)}
