"""Channel groups of any traced network: which widths a user's module lets the search change.

The module is traced with ``torch.fx`` (``symbolic_trace``) and run once through
``ShapeProp`` at the data's geometry, so every node has its output shape. Every conv and
linear layer then starts a *channel variable*; walking the graph in order gives each tensor's
channel count as a linear expression in those variables:

- BatchNorm, activations, pooling, dropout and other shape-keeping ops pass the expression on;
- an addition or multiplication of two tensors with the same channels (residual, squeeze-excite
  scaling) makes their variables one (union-find): one searchable *group*;
- a depthwise conv's output is its input's expression; a grouped conv needs its input and
  output divisible by its groups;
- concatenation along channels adds expressions; ``chunk`` divides them (the width must then
  be divisible); a channel shuffle (view into groups, transpose, view back) keeps them;
  flattening ``(N, C, H, W)`` multiplies by ``H * W``.

Variables reaching the network's output, its input, a literal channel count in the code, or an
op this analysis does not understand are *fixed*: they keep their width (a warning names the
op). A multiply-accumulate op other than ``nn.Conv2d`` / ``nn.Linear`` modules (``F.conv2d``,
``matmul``, ...) is refused, because its MACs would be miscounted.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import ConfigError

# Ops that multiply-accumulate outside the conv / linear modules counted here.
MAC_FUNCTIONS = {F.conv1d, F.conv2d, F.conv3d, F.conv_transpose2d, F.linear, torch.matmul, torch.mm, torch.bmm,
                 torch.einsum, torch.addmm, torch.baddbmm, operator.matmul, F.scaled_dot_product_attention}
MAC_METHODS = {"matmul", "mm", "bmm", "__matmul__"}
MAC_MODULES = (nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
               nn.MultiheadAttention, nn.Bilinear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
CAT = {torch.cat, torch.concat, torch.concatenate}
RESHAPE_METHODS = {"view", "reshape"}
REDUCTIONS = {"mean", "sum", "amax", "amin", "std", "var", "logsumexp"}  # methods and torch functions


class Expr:
    """A channel count: ``const + sum(coef * width(var))`` with exact fractions."""

    __slots__ = ("const", "terms")

    def __init__(self, const: Fraction | int = 0, terms: dict[int, Fraction] | None = None) -> None:
        self.const = Fraction(const)
        self.terms = {v: c for v, c in (terms or {}).items() if c}

    def __add__(self, other: Expr) -> Expr:
        terms = dict(self.terms)
        for v, c in other.terms.items():
            terms[v] = terms.get(v, 0) + c
        return Expr(self.const + other.const, terms)

    def scale(self, factor: Fraction) -> Expr:
        return Expr(self.const * factor, {v: c * factor for v, c in self.terms.items()})


@dataclass
class ConvUse:
    """One call of a conv or linear module in the traced graph."""

    path: str  # the module's qualified name
    linear: bool
    cin: Expr
    cout: Expr
    kernel: tuple[int, int]
    out_hw: tuple[int, int]  # output positions per image (linear: leading dims, 1)
    groups: int  # the module's groups; 0 for depthwise (groups follow the width)
    bias: bool
    site: str  # where its output channels leave it: the BN right after it, or itself


@dataclass
class ChannelGraph:
    """The result: every conv / linear / BN use with its channel expressions, and the groups.

    Variables are joined by a weighted union-find: ``width(v) = ratio[v] * width(parent[v])``,
    so a group may hold a tensor and its half (a channel split rejoined by a shuffle).
    """

    convs: list[ConvUse] = field(default_factory=list)
    norms: dict[str, Expr] = field(default_factory=dict)  # BN path -> its channels
    parent: dict[int, int] = field(default_factory=dict)
    ratio: dict[int, Fraction] = field(default_factory=dict)
    default: dict[int, int] = field(default_factory=dict)  # each variable's traced width
    fixed: set[int] = field(default_factory=set)  # roots whose width cannot change
    name: dict[int, str] = field(default_factory=dict)  # variable -> the module whose output it is
    requirements: list[tuple[Expr, int, str]] = field(default_factory=list)  # (channels, divisor, where)
    steps: dict[int, int] = field(default_factory=dict)  # root -> its width is a multiple of this
    warnings: list[str] = field(default_factory=list)

    # -- weighted union-find ---------------------------------------------------------
    def new_var(self, path: str, width: int) -> Expr:
        v = len(self.parent)
        self.parent[v], self.ratio[v], self.default[v], self.name[v] = v, Fraction(1), width, path
        return Expr(0, {v: Fraction(1)})

    def find(self, v: int) -> tuple[int, Fraction]:
        """The root of ``v``'s group and ``x`` with ``width(v) = x * width(root)``."""
        if self.parent[v] == v:
            return v, Fraction(1)
        root, x = self.find(self.parent[v])
        self.parent[v], self.ratio[v] = root, self.ratio[v] * x
        return root, self.ratio[v]

    def union(self, a: int, fa: Fraction, b: int, fb: Fraction) -> bool:
        """Join so that ``fa * width(a) == fb * width(b)``; False if the groups contradict it."""
        (ra, xa), (rb, xb) = self.find(a), self.find(b)
        if ra == rb:
            return fa * xa == fb * xb
        if rb < ra:  # the earlier variable names the group
            ra, xa, fa, rb, xb, fb = rb, xb, fb, ra, xa, fa
        self.parent[rb], self.ratio[rb] = ra, (fa * xa) / (fb * xb)
        if rb in self.fixed:
            self.fixed.add(ra)
        return True

    def freeze(self, expr: Expr) -> None:
        for v in expr.terms:
            self.fixed.add(self.find(v)[0])

    def free_terms(self, expr: Expr) -> tuple[Fraction, dict[int, Fraction]]:
        """``expr`` over group roots, with fixed groups turned into constants."""
        const, terms = expr.const, {}
        for v, c in expr.terms.items():
            r, x = self.find(v)
            if r in self.fixed:
                const += c * self.default[v]
            else:
                terms[r] = terms.get(r, 0) + c * x
        return const, {r: c for r, c in terms.items() if c}

    def evaluate(self, expr: Expr, widths: dict[int, int]) -> int:
        """The channel count at ``widths`` (root -> width; groups not given keep their traced width)."""
        const, terms = self.free_terms(expr)
        value = const + sum(c * widths.get(r, self.default[r]) for r, c in terms.items())
        if value.denominator != 1:
            raise ValueError(f"widths give a fractional channel count {value}")
        return int(value)

    # -- constraints -----------------------------------------------------------------
    def equate(self, a: Expr, b: Expr, where: str) -> None:
        """Channels ``a`` and ``b`` must stay equal (an addition, a product, a shuffle's halves)."""
        (ca, ta), (cb, tb) = self.free_terms(a), self.free_terms(b)
        if ta == tb and ca == cb:
            return
        if len(ta) == len(tb) == 1 and ca == cb:
            (va, fa), (vb, fb) = *ta.items(), *tb.items()
            if self.union(va, fa, vb, fb):
                return
        self.freeze(a)
        self.freeze(b)
        if ta or tb:
            self.warn(f"{where} couples channels in a way the search cannot keep equal; their widths are fixed")

    def divisible(self, expr: Expr, by: int, where: str) -> None:
        """The channels of ``expr`` must stay a multiple of ``by`` (resolved by :meth:`finish`)."""
        if by > 1:
            self.requirements.append((expr, by, where))

    def finish(self) -> None:
        """Turn the divisibility requirements into a width step per group.

        Each group's share of a requirement must be a multiple of the divisor by itself (a
        sufficient condition); a group whose traced width breaks that is fixed, which may move
        the burden onto others, so this repeats until nothing changes.
        """
        changed = True
        while changed:
            changed, self.steps = False, {}
            for expr, by, where in self.requirements:
                _, terms = self.free_terms(expr)
                for r, c in terms.items():
                    step = by * c.denominator // math.gcd(c.numerator, by * c.denominator)
                    if self.default[r] % step:
                        self.fixed.add(r)
                        self.warn(f"{where} needs channels divisible by {by}, which {self.name[r]}'s width "
                                  f"{self.default[r]} cannot keep in steps; its width is fixed")
                        changed = True
                        break
                    self.steps[r] = math.lcm(self.steps.get(r, 1), step)
                if changed:
                    break
        for v in self.parent:  # members at a fractional ratio need a root they divide evenly
            r, x = self.find(v)
            if r not in self.fixed and x.denominator > 1:
                self.steps[r] = math.lcm(self.steps.get(r, 1), x.denominator)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    # -- the result ------------------------------------------------------------------
    def groups(self) -> list[int]:
        """The roots of the searchable groups, in forward order."""
        return [v for v in self.parent if self.find(v)[0] == v and v not in self.fixed]

    def step(self, root: int) -> int:
        """The width of group ``root`` must be a multiple of this."""
        return self.steps.get(root, 1)


class _Cat(Expr):
    """The channels of a concatenation, remembering its parts (a shuffle may equate them)."""

    __slots__ = ("parts",)

    def __init__(self, parts: list[Expr]) -> None:
        total = Expr()
        for p in parts:
            total = total + p
        super().__init__(total.const, total.terms)
        self.parts = parts


class _Tuple(tuple):
    """Channel expressions of a node that returns several tensors (``chunk``)."""


@dataclass
class _Shuffled:
    """A ``(N, g, C/g, H, W)`` view (or its transpose) of a tensor with channels ``expr``."""

    expr: Expr
    groups: int


def trace(module: nn.Module, example: torch.Tensor) -> ChannelGraph:
    """The channel graph of ``module`` on input ``example`` (a batch, NCHW)."""
    try:
        gm = fx.GraphModule(module, _Tracer().trace(module))
    except Exception as exc:
        raise ConfigError(f"torch.fx cannot trace {type(module).__name__}: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''} (netadjust needs a network without "
                          f"data-dependent Python control flow in forward)") from exc
    was_training = module.training
    gm.eval()
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    module.train(was_training)
    return _Analysis(gm).run()


class _Tracer(fx.Tracer):
    """Keeps every conv, linear and BatchNorm whole, subclasses from other libraries included
    (timm's BatchNormAct2d, Conv2dSame), so they are resized as modules."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (nn.Conv2d, nn.Linear, *NORMS)) or super().is_leaf_module(m, qualname)


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


class _Analysis:
    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.graph = ChannelGraph()
        self.info: dict[fx.Node, Any] = {}
        self.modules = dict(gm.named_modules())

    def run(self) -> ChannelGraph:
        for node in self.gm.graph.nodes:
            self.info[node] = self.visit(node)
        self.graph.finish()
        for message in self.graph.warnings:
            warnings.warn(f"netadjust: {message}", stacklevel=3)
        return self.graph

    # -- helpers -----------------------------------------------------------------------
    def where(self, node: fx.Node) -> str:
        stack = node.meta.get("nn_module_stack")
        owner = next(reversed(stack.values()))[0] if stack else ""
        target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
        return f"`{target}` ({node.op}{', in ' + owner if owner else ''})"

    def expr(self, node: Any) -> Expr | None:
        info = self.info.get(node) if isinstance(node, fx.Node) else None
        return info if isinstance(info, Expr) else None

    def constant(self, node: fx.Node) -> Expr | None:
        shape = _shape(node)
        return Expr(shape[1]) if shape is not None and len(shape) >= 2 else None

    def inputs(self, node: fx.Node) -> Iterator[Expr]:
        """The channel expressions of every tensor ``node`` reads (a tuple's parts, a shuffle's channels)."""
        for arg in node.all_input_nodes:
            info = self.info.get(arg)
            for e in (info if isinstance(info, _Tuple) else [info]):
                if isinstance(e, (Expr, _Shuffled)):
                    yield e.expr if isinstance(e, _Shuffled) else e

    def give_up(self, node: fx.Node, why: str) -> Expr | None:
        """Fix every input's channels and give the output its traced channel count."""
        for e in self.inputs(node):
            if self.graph.free_terms(e)[1]:
                self.graph.warn(f"{self.where(node)} {why}; the widths of its inputs are fixed")
            self.graph.freeze(e)
        return self.constant(node)

    # -- the walk ----------------------------------------------------------------------
    def visit(self, node: fx.Node) -> Any:
        if node.op == "placeholder":
            return self.constant(node)
        if node.op == "get_attr":
            return self.constant(node)
        if node.op == "output":  # the logits' width is the number of classes
            for e in self.inputs(node):
                self.graph.freeze(e)
            return None
        if node.op == "call_module":
            return self.visit_module(node, self.modules[node.target])
        return self.visit_function(node)

    def visit_module(self, node: fx.Node, m: nn.Module) -> Any:
        g = self.graph
        path = str(node.target)
        if isinstance(m, MAC_MODULES):
            raise ConfigError(f"netadjust cannot count the MACs of {path} ({type(m).__name__}); "
                              f"it supports nn.Conv2d and nn.Linear")
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            x = self.expr(node.args[0]) if node.args else None
            shape, out_shape = _shape(node.args[0]), _shape(node)
            if x is None or shape is None or out_shape is None:
                raise ConfigError(f"netadjust cannot follow the input of {path} ({type(m).__name__})")
            if isinstance(m, nn.Linear):
                if len(shape) != 2:  # features last on a map: keep both sides fixed
                    g.freeze(x)
                    g.warn(f"{path} (nn.Linear) runs on a {len(shape)}-d tensor; its widths are fixed")
                    x = Expr(shape[-1])
                    out = Expr(m.out_features)
                else:
                    out = g.new_var(path, m.out_features)
                positions = math.prod(shape[1:-1]) if len(shape) > 2 else 1
                use = ConvUse(path, True, x, out, (1, 1), (positions, 1), 1, m.bias is not None, path)
            else:
                kernel = tuple(m.kernel_size)
                if m.groups == 1:
                    out = g.new_var(path, m.out_channels)
                    groups = 1
                elif m.groups == m.in_channels == m.out_channels:  # depthwise: one filter per channel
                    out, groups = x, 0
                else:
                    g.divisible(x, m.groups, f"{path} (groups={m.groups})")
                    out = g.new_var(path, m.out_channels)
                    g.divisible(out, m.groups, f"{path} (groups={m.groups})")
                    groups = m.groups
                use = ConvUse(path, False, x, out, kernel, tuple(out_shape[2:4]), groups, m.bias is not None, path)
            users = list(node.users)
            if len(users) == 1 and users[0].op == "call_module" and isinstance(self.modules[users[0].target], NORMS):
                use.site = str(users[0].target)
            g.convs.append(use)
            return out
        if isinstance(m, NORMS):
            x = self.expr(node.args[0])
            if x is None:
                return self.give_up(node, "normalises channels it cannot follow")
            g.norms[str(node.target)] = x
            return x
        if isinstance(m, nn.Flatten):
            return self.flatten(node, node.args[0], m.start_dim, m.end_dim)
        if any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False)):
            return self.give_up(node, f"({type(m).__name__}) holds channel-sized state netadjust cannot resize")
        return self.elementwise(node)

    def visit_function(self, node: fx.Node) -> Any:
        target = node.target
        method = target if node.op == "call_method" else None
        if target in MAC_FUNCTIONS or method in MAC_METHODS:
            raise ConfigError(f"netadjust cannot count the MACs of {self.where(node)}; it counts nn.Conv2d and "
                              f"nn.Linear modules only")
        tensor = node.args[0] if node.args else None
        if target is operator.getitem:
            info = self.info.get(tensor)
            if isinstance(info, _Tuple):
                return info[node.args[1]]
            if isinstance(info, (Expr, _Shuffled)):
                return self.give_up(node, "indexes channels")
            return None
        several = _shape(node) is None and isinstance(node.meta.get("tensor_meta"), (tuple, list))
        if _shape(node) is None and not several:
            return None  # sizes, numbers: not tensors
        if target in CAT:
            return self.cat(node)
        if target in (torch.chunk,) or method == "chunk":
            return self.chunk(node)
        if target is torch.flatten or method == "flatten":
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            return self.flatten(node, tensor, start, end)
        if method in RESHAPE_METHODS or target is torch.reshape:
            return self.reshape(node)
        if target is torch.transpose or method == "transpose":
            info, rank = self.info.get(tensor), len(_shape(tensor) or ())
            dims = {d % rank for d in node.args[1:3]} if rank else {1}
            if isinstance(info, _Shuffled) and dims == {1, 2}:
                return info  # the shuffle's transpose: a permutation of the same channels
            return self.give_up(node, "moves the channel dimension") if 1 in dims else self.elementwise(node)
        name = method or getattr(target, "__name__", "")
        if name in REDUCTIONS and (method or getattr(torch, name, None) is target):
            return self.reduction(node)
        if method == "contiguous":
            return self.info.get(tensor)
        if method == "permute" or target is torch.permute:
            return self.give_up(node, "permutes dimensions")
        if several:
            return self.give_up(node, "returns several tensors")
        return self.elementwise(node)

    def elementwise(self, node: fx.Node) -> Expr | None:
        """Ops that keep the channel dimension (activations, pooling, add, mul, ...)."""
        shape = _shape(node)
        if shape is None or len(shape) < 2:
            return self.give_up(node, "reduces its input to fewer than 2 dimensions")
        same: list[Expr] = []
        for arg in node.all_input_nodes:
            arg_shape, info = _shape(arg), self.info.get(arg)
            if arg_shape is not None and len(arg_shape) == 1 and arg_shape[0] == shape[1] > 1:
                return self.give_up(node, "applies a channel-sized tensor")  # e.g. F.batch_norm's weight
            if arg_shape is None or len(arg_shape) < 2 or not isinstance(info, (Expr, _Shuffled)):
                continue
            if isinstance(info, _Shuffled) or len(arg_shape) != len(shape):
                return self.give_up(node, "mixes tensors of different ranks")
            if arg_shape[1] == shape[1]:
                same.append(info)
            elif arg_shape[1] != 1 and shape[1] != 1:
                return self.give_up(node, "changes the number of channels")
        if not same:
            return Expr(shape[1])
        for other in same[1:]:
            self.graph.equate(same[0], other, self.where(node))
        return same[0]

    def reduction(self, node: fx.Node) -> Expr | None:
        """``x.mean((2, 3))`` and the like: channels kept unless dim 1 is reduced."""
        x, shape = self.expr(node.args[0]), _shape(node.args[0])
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if x is None or shape is None or dims is None:
            return self.give_up(node, "reduces a tensor it cannot follow")
        dims = {d % len(shape) for d in (dims if isinstance(dims, (list, tuple)) else (dims,))}
        if 0 in dims:
            return self.give_up(node, "reduces over the batch")
        return self.constant(node) if 1 in dims else x

    def cat(self, node: fx.Node) -> Expr | None:
        tensors = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        shape = _shape(node)
        if dim % len(shape) != 1:
            return self.elementwise(node)
        parts = [self.expr(t) for t in tensors]
        if any(p is None for p in parts):
            return self.give_up(node, "concatenates channels it cannot follow")
        return _Cat(parts)

    def chunk(self, node: fx.Node) -> Any:
        x = self.expr(node.args[0])
        chunks = node.args[1] if len(node.args) > 1 else node.kwargs.get("chunks")
        dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
        shape = _shape(node.args[0])
        if x is None or not isinstance(chunks, int) or dim % len(shape) != 1 or shape[1] % chunks:
            return self.give_up(node, "splits channels unevenly")
        self.graph.divisible(x, chunks, self.where(node))
        return _Tuple([x.scale(Fraction(1, chunks))] * chunks)

    def flatten(self, node: fx.Node, tensor: fx.Node, start: int, end: int) -> Expr | None:
        x, shape = self.expr(tensor), _shape(tensor)
        if x is None or shape is None:
            return self.give_up(node, "flattens a tensor it cannot follow")
        start, end = start % len(shape), end % len(shape)
        if start == 1 and end == len(shape) - 1:  # (N, C, H, W) -> (N, C*H*W)
            return x.scale(Fraction(math.prod(shape[2:])))
        if start >= 2:
            return x
        return self.give_up(node, "flattens the channel dimension with the batch")

    def reshape(self, node: fx.Node) -> Any:
        tensor = node.args[0]
        info, shape, out = self.info.get(tensor), _shape(tensor), _shape(node)
        sizes = node.args[1:] if len(node.args) > 2 or not isinstance(node.args[1], (list, tuple)) else node.args[1]
        literal = [s if isinstance(s, int) else None for s in sizes]  # None: computed at run time
        if isinstance(info, Expr) and len(shape) == 4 and len(out) == 5 and out[3:] == shape[2:]:
            groups = literal[1]
            if isinstance(groups, int) and groups > 0 and literal[2] is None:  # view(n, g, c // g, h, w)
                if isinstance(info, _Cat) and len(info.parts) == groups:  # shuffling g concatenated parts:
                    for part in info.parts[1:]:  # they are meant to be equal (ShuffleNet's halves)
                        self.graph.equate(info.parts[0], part, self.where(node))
                self.graph.divisible(info, groups, self.where(node))
                return _Shuffled(info, groups)
        if isinstance(info, _Shuffled) and len(shape) == 5 and len(out) == 4 and literal[1] is None:
            return info.expr  # back to (N, C, H, W): the channels are permuted, not changed
        if isinstance(info, Expr) and len(out) == 2 and len(shape) >= 2 and literal[1] in (None, -1):
            return info.scale(Fraction(math.prod(shape[2:])))  # view(n, -1)
        if isinstance(info, Expr) and out == shape and literal[1] is None:
            return info
        return self.give_up(node, "reshapes the channel dimension")
