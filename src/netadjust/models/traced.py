"""Any network as an architecture: ``torchvision:NAME``, ``timm:NAME`` or ``package.module:factory``.

The factory's module is traced once (``graph.py``) at the data's geometry; every searchable
channel group becomes a width key, named after the first conv or linear layer that produces
it. MACs and parameters come from the traced channel expressions, exactly and without building
a model. ``build(widths)`` returns a resized copy of the user's module: the same classes and
forward code, with each conv, linear and BatchNorm resized to the widths and every weight
re-initialised (netadjust's scheme: He-normal convs, unit BN, small linear), wrapped with one
probe per key. A key's probe acts at every place its channels are produced (each conv of the
group, after its BatchNorm), with one mask per forward pass, so dropping a channel removes it
from the whole group.

Limits: forward must be traceable by ``torch.fx`` (no Python branching on tensor values);
convs are ``nn.Conv2d`` and linear layers ``nn.Linear`` (other MAC-bearing ops are refused);
warm-start search is not available for these models.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from functools import lru_cache, partial
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, WidthsError
from ..widths import Widths
from .base import Arch, Layer
from .blocks import SegmentedNet, init_weights
from .graph import NORMS, ChannelGraph, trace
from .probes import SharedChannelDrop

SPEC_FORMS = "torchvision:NAME, timm:NAME or package.module:factory"


def is_spec(name: str) -> bool:
    """Whether ``name`` names a module factory rather than a registered family."""
    return isinstance(name, str) and ":" in name


def load_factory(spec: str) -> tuple[Callable[..., nn.Module], dict[str, str]]:
    """The factory a spec names, and how it spells the geometry arguments it takes."""
    prefix, _, name = spec.partition(":")
    if not prefix or not name:
        raise ConfigError(f"--arch {spec!r}: expected {SPEC_FORMS}")
    if prefix == "torchvision":
        tv = _import("torchvision.models", spec, "pip install 'netadjust[models]'")
        if name not in tv.list_models():
            raise ConfigError(f"--arch {spec!r}: torchvision has no model {name!r} (see torchvision.models.list_models())")
        return partial(tv.get_model, name, weights=None), {"num_classes": "num_classes"}
    if prefix == "timm":
        timm = _import("timm", spec, "pip install 'netadjust[models]'")
        if name not in timm.list_models():
            raise ConfigError(f"--arch {spec!r}: timm has no model {name!r} (see timm.list_models())")
        return partial(timm.create_model, name, pretrained=False), {"num_classes": "num_classes", "in_channels": "in_chans"}
    if os.getcwd() not in sys.path:  # as `python -m` does: modules in the working directory import
        sys.path.insert(0, os.getcwd())
    module = _import(prefix, spec, "check the name, or add its directory to PYTHONPATH")
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ConfigError(f"--arch {spec!r}: module {prefix} has no callable {name!r}")
    taken = inspect.signature(factory).parameters
    return factory, {arg: arg for arg in ("num_classes", "in_channels", "input_size") if arg in taken}


def _import(module: str, spec: str, hint: str) -> Any:
    try:
        return importlib.import_module(module)
    except Exception as exc:  # ImportError, or a package that fails while importing
        raise ConfigError(f"--arch {spec!r}: cannot import {module}: {type(exc).__name__}: {exc}; {hint}") from exc


class TracedArch(Arch):
    """An architecture made from a module factory by tracing its channel groups."""

    resizable = False  # no channel description for warm-start (models/resize.py)

    def __init__(self, *, name: str, **common: Any) -> None:
        super().__init__(name=name, **common)
        factory, spelled = load_factory(name)
        given = {"num_classes": self.num_classes, "in_channels": self.in_channels, "input_size": self.input_size}
        try:
            module = factory(**{spelled[k]: v for k, v in given.items() if k in spelled})
        except Exception as exc:
            raise ConfigError(f"--arch {name!r}: the factory failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(module, nn.Module):
            raise ConfigError(f"--arch {name!r}: the factory returned {type(module).__name__}, not an nn.Module")
        self._module = module.cpu().eval()
        stem = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
        expects = self.in_channels if "in_channels" in spelled or stem is None else stem.in_channels
        if expects % self.in_channels:
            raise ConfigError(f"--arch {name!r}: the model takes {expects} input channels and the data has "
                              f"{self.in_channels}, which does not divide it")
        self.repeat_input = expects // self.in_channels  # grey images feed an RGB stem, repeated
        self.graph: ChannelGraph = trace(module, torch.zeros(1, expects, self.input_size, self.input_size))
        with torch.no_grad():
            outputs = self._module(torch.zeros(1, expects, self.input_size, self.input_size))
        if not isinstance(outputs, torch.Tensor) or outputs.shape[-1] != self.num_classes:
            shape = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs).__name__
            raise ConfigError(f"--arch {name!r}: the model's output is {shape}; netadjust needs logits (N, "
                              f"{self.num_classes}) for {self.num_classes} classes (does the factory take num_classes?)")
        self._roots: dict[str, int] = {}
        for root in self.graph.groups():
            key = self.graph.name[root]
            key = key if key not in self._roots else f"{key}#{root}"
            self._roots[key] = root
        self._steps = {key: self.graph.step(root) for key, root in self._roots.items()}
        self._defaults = {key: max(step, step * round(self.graph.default[root] * self.width_mult / step))
                          for (key, root), step in zip(self._roots.items(), self._steps.values())}
        # Where each key's probe acts: every conv writing all of the group's channels (after its BN).
        self._sites: dict[str, list[str]] = {key: [] for key in self._roots}
        key_of = {root: key for key, root in self._roots.items()}
        for use in self.graph.convs:
            _, terms = self.graph.free_terms(use.cout)
            if list(terms.values()) == [1] and use.site not in self._sites[key_of[next(iter(terms))]]:
                self._sites[key_of[next(iter(terms))]].append(use.site)
        resized = {use.path for use in self.graph.convs} | set(self.graph.norms)
        self._fixed_params = sum(p.numel() for path, m in module.named_modules() if path not in resized
                                 for p in m.parameters(recurse=False))

    # -- widths ----------------------------------------------------------------------------
    def width_steps(self) -> dict[str, int]:
        """Per key, the multiple its width must be (grouped convs, even channel splits)."""
        return dict(self._steps)

    def validate(self, widths: Mapping[str, Any]) -> Widths:
        valid = super().validate(widths)
        wrong = [f"{k} = {w} (a multiple of {self._steps[k]})" for k, w in valid.items() if w % self._steps[k]]
        if wrong:
            raise WidthsError(f"invalid widths for {self.name}: " + "; ".join(wrong))
        return valid

    def _group_widths(self, widths: Mapping[str, int]) -> dict[int, int]:
        return {root: widths[key] for key, root in self._roots.items()}

    # -- cost --------------------------------------------------------------------------------
    def layers(self, widths: Mapping[str, int]) -> list[Layer]:
        """Every conv and linear call; ``norm`` where a BatchNorm follows it directly."""
        g, at = self.graph, self._group_widths(widths)
        out = []
        for use in g.convs:
            cin, cout = g.evaluate(use.cin, at), g.evaluate(use.cout, at)
            norm = use.site != use.path and self._module.get_submodule(use.site).affine
            out.append(Layer(use.path, cin, cout, use.kernel, use.out_hw, use.groups or cin, use.bias, norm))
        return out

    def params(self, widths: Mapping[str, int]) -> int:
        g, at = self.graph, self._group_widths(widths)
        convs = {layer.name: layer.params for layer in self.layers(widths)}  # a module called twice counts once
        counted = {use.site for use in g.convs}
        norms = sum(2 * g.evaluate(expr, at) for path, expr in g.norms.items()
                    if path not in counted and self._module.get_submodule(path).affine)
        return sum(convs.values()) + norms + self._fixed_params

    # -- networks ----------------------------------------------------------------------------
    def _build(self, widths: Widths) -> SegmentedNet:
        g, at = self.graph, self._group_widths(widths)
        net = copy.deepcopy(self._module)
        for use in g.convs:
            m = net.get_submodule(use.path)
            cin, cout = g.evaluate(use.cin, at), g.evaluate(use.cout, at)
            if isinstance(m, nn.Linear):
                _resize_linear(m, cin, cout)
            else:
                _resize_conv(m, cin, cout, use.groups or cin)
        for path, expr in g.norms.items():
            _resize_norm(net.get_submodule(path), g.evaluate(expr, at))
        for m in net.modules():  # fresh weights everywhere, from the caller's random state
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        init_weights(net)
        return SegmentedNet([TracedNet(net.train(), self._sites, self.repeat_input)])


class TracedNet(nn.Module):
    """A user's network with a probe per width key, hooked where the key's channels are produced."""

    def __init__(self, net: nn.Module, sites: Mapping[str, list[str]], repeat_input: int = 1) -> None:
        super().__init__()
        self.net = net
        self.repeat_input = repeat_input
        self.probes = nn.ModuleList(SharedChannelDrop(key) for key in sites)
        for probe, paths in zip(self.probes, sites.values()):
            for path in paths:
                net.get_submodule(path).register_forward_hook(probe.hook)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for probe in self.probes:
            probe.new_pass()
        if self.repeat_input > 1:
            x = x.repeat(1, self.repeat_input, 1, 1)
        return self.net(x)


def _resize_conv(m: nn.Conv2d, cin: int, cout: int, groups: int) -> None:
    if (m.in_channels, m.out_channels, m.groups) == (cin, cout, groups):
        return
    m.in_channels, m.out_channels, m.groups = cin, cout, groups
    m.weight = nn.Parameter(m.weight.new_empty(cout, cin // groups, *m.kernel_size))
    if m.bias is not None:
        m.bias = nn.Parameter(m.bias.new_empty(cout))


def _resize_linear(m: nn.Linear, cin: int, cout: int) -> None:
    if (m.in_features, m.out_features) == (cin, cout):
        return
    m.in_features, m.out_features = cin, cout
    m.weight = nn.Parameter(m.weight.new_empty(cout, cin))
    if m.bias is not None:
        m.bias = nn.Parameter(m.bias.new_empty(cout))


def _resize_norm(m: nn.Module, channels: int) -> None:
    assert isinstance(m, NORMS)
    if m.num_features == channels:
        return
    m.num_features = channels
    if m.affine:
        m.weight = nn.Parameter(m.weight.new_empty(channels))
        m.bias = nn.Parameter(m.bias.new_empty(channels))
    if m.track_running_stats:
        m.running_mean = m.running_mean.new_zeros(channels)
        m.running_var = m.running_var.new_ones(channels)


@lru_cache(maxsize=4)
def _cached(name: str, settings: tuple[tuple[str, Any], ...]) -> TracedArch:
    return TracedArch(name=name, **dict(settings))


def traced_arch(name: str, **settings: Any) -> TracedArch:
    """The architecture of a module factory (traced once per name and settings)."""
    return _cached(name, tuple(sorted(settings.items())))
