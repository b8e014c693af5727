"""Probes: channel dropout at every searchable layer, and the switches that drive them.

A :class:`ChannelDrop` sits where a searchable layer's channels leave it (docs/method.md#fur
says where, per family). It is the identity until a rate is set. The trainer sets rates on all
probes at once as a regulariser; the FUR estimator switches one probe on at a time, with masks
from a per-key random stream, and reads back what the probes saw. Both go through
:class:`Probes`, the one interface to a network's probes; nothing else touches their state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class Trace:
    """What a probe saw on the last forward pass while traced."""

    activations: list[torch.Tensor] = field(default_factory=list)  # its input, when it was off: one per site
    mask: torch.Tensor | None = None  # the scaled mask it applied (N, C, 1, 1), when it was on


class ChannelDrop(nn.Module):
    """Channel-wise dropout ("SpatialDropout") of one width key's channels.

    With rate ``p > 0`` it zeroes each channel of each sample with probability ``p`` and scales
    the survivors by ``1 / (1 - p)``, in train *and* eval mode. Masks come from the default
    random generator, or from the one :meth:`Probes.streams` gives it.
    """

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.p = 0.0
        self._generator: torch.Generator | None = None
        self._trace: Trace | None = None

    def sample_mask(self, x: torch.Tensor) -> torch.Tensor:
        """A scaled Bernoulli mask ``(N, C, 1, ...)`` for input ``x``: one draw per sample and
        channel, broadcast over space."""
        keep = 1.0 - self.p
        shape = x.shape[:2] + (1,) * (x.dim() - 2)
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep, generator=self._generator)
        return mask.div_(keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0:
            if self._trace is not None:
                self._trace.activations = [x]
            return x
        mask = self.sample_mask(x)
        if self._trace is not None:
            self._trace.mask = mask
        return x * mask

    def extra_repr(self) -> str:
        return f"key={self.key!r}, p={self.p}"


class SharedChannelDrop(ChannelDrop):
    """A :class:`ChannelDrop` applied at several places of one forward pass (every producer of a
    channel group, through :meth:`hook`), with one mask per pass: a dropped channel is gone from
    the whole group. The owner calls :meth:`new_pass` before each forward pass."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self._mask: torch.Tensor | None = None

    def new_pass(self) -> None:
        self._mask = None
        if self._trace is not None:
            self._trace.activations = []

    def hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        """A forward hook: the module's output passes through this probe."""
        return self(output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0:
            if self._trace is not None:
                self._trace.activations.append(x)
            return x
        if self._mask is None or self._mask.shape != x.shape[:2] + (1,) * (x.dim() - 2):
            self._mask = self.sample_mask(x)
        if self._trace is not None:
            self._trace.mask = self._mask
        return x * self._mask


class Probes:
    """The probes of one network, by width key in forward order, and their switches."""

    def __init__(self, model: nn.Module) -> None:
        self.by_key: dict[str, ChannelDrop] = {m.key: m for m in model.modules() if isinstance(m, ChannelDrop)}

    def keys(self) -> list[str]:
        return list(self.by_key)

    def set_regulariser(self, rate: float, epoch: int, epochs: int) -> None:
        """The training regulariser: probe i of L drops ``rate * epoch / epochs * (i + 1) / L``
        (ramped over the epochs, stronger with depth)."""
        probes = list(self.by_key.values())
        for i, probe in enumerate(probes):
            probe.p = rate * epoch / epochs * (i + 1) / len(probes)

    def rates(self) -> list[float]:
        return [p.p for p in self.by_key.values()]

    @contextlib.contextmanager
    def off(self) -> Iterator[None]:
        """Every probe the identity for the duration (the whole network is evaluated)."""
        saved = self.rates()
        for probe in self.by_key.values():
            probe.p = 0.0
        try:
            yield
        finally:
            for probe, p in zip(self.by_key.values(), saved):
                probe.p = p

    @contextlib.contextmanager
    def active(self, key: str, p: float) -> Iterator[None]:
        """Probe ``key`` drops at rate ``p`` for the duration (the others as they are)."""
        probe = self.by_key[key]
        saved, probe.p = probe.p, p
        try:
            yield
        finally:
            probe.p = saved

    @contextlib.contextmanager
    def streams(self, seed: int, device: torch.device) -> Iterator[None]:
        """Each probe draws its masks from its own generator, seeded from (``seed``, its index):
        a key's masks then do not depend on which other keys are probed, nor in which order or
        process."""
        for i, probe in enumerate(self.by_key.values()):
            probe._generator = torch.Generator(device).manual_seed((seed * 100_003 + i) % 2**63)
        try:
            yield
        finally:
            for probe in self.by_key.values():
                probe._generator = None

    @contextlib.contextmanager
    def tracing(self, keys: Sequence[str]) -> Iterator[dict[str, Trace]]:
        """Record, for each of ``keys``, what its probe sees on every forward pass."""
        traces = {key: Trace() for key in keys}
        for key, trace in traces.items():
            self.by_key[key]._trace = trace
        try:
            yield traces
        finally:
            for key in keys:
                self.by_key[key]._trace = None
