"""One training step, two ways: eager (the reference) and static (one CUDA graph on a GPU).

A step is the forward pass, the loss, the backward pass and the SGD update of one batch. The
trainer runs an epoch through a stepper::

    stepper.begin_epoch(epoch, lrs)       # the learning rate of every step of the epoch
    for x, y in batches:
        stepper.step(x, y)
    loss_sum, correct, count = stepper.end_epoch()   # TrainingError if a loss was not finite

- :class:`EagerStep`: ``torch.optim.SGD``, and the loss checked on the host after every step
  (one synchronisation per step). It runs everywhere: CPU, torchrun, ``torch.compile``.
- :class:`StaticStep`: the batch is copied into fixed input buffers and the step reads
  everything else from the device: the epoch's learning rates, a step counter, the per-step
  losses and the metric sums, which the host reads once, at the end of the epoch. The SGD
  update is a few ``foreach`` kernels with the learning rate as a device tensor (where
  ``torch.optim.SGD`` would read it on the host); its momentum buffers are the optimiser's own,
  so checkpoints are the same as the eager path's. On CUDA the step is captured in a CUDA graph
  and replayed: the host launches one graph per step instead of hundreds of kernels, which is
  what bounds a small CNN's training there. The regulariser's dropout masks are drawn inside the
  graph from the CUDA generator (each replay draws new ones); as its rates change every epoch,
  the step is captured again at the start of each epoch (milliseconds).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig
from .errors import TrainingError


def autocast(device: torch.device, enabled: bool, *, cache: bool = True):
    """bfloat16 autocast on CUDA when ``enabled``. Inside a CUDA graph the cast-weight cache
    must be off: the cache would keep the casts of the capture, not redo them per replay."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()


@dataclass
class Distillation:
    """Soft targets from a teacher (Hinton et al., 2015): the loss becomes
    ``(1 - alpha) * CE(labels) + alpha * T^2 * KL(teacher_T || student_T)``, both softmaxes at
    temperature ``T``; the ``T^2`` keeps the soft term's gradients on the scale of the hard one."""

    teacher: nn.Module  # in eval mode, on the training device
    alpha: float
    temperature: float

    def loss(self, logits: torch.Tensor, x: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = F.log_softmax(self.teacher(x).float() / self.temperature, 1)
        soft = F.kl_div(F.log_softmax(logits / self.temperature, 1), target, reduction="batchmean", log_target=True)
        return (1 - self.alpha) * hard + self.alpha * self.temperature ** 2 * soft


def training_loss(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
                  distill: Distillation | None) -> torch.Tensor:
    """Cross-entropy on the labels (with the configured label smoothing), blended with a
    teacher's soft targets when distilling."""
    hard = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
    return hard if distill is None else distill.loss(logits.float(), x, hard)


def sgd(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """The training's optimiser: ``torch.optim.SGD`` with ``cfg``'s learning rate, momentum,
    Nesterov flag (only with momentum) and weight decay."""
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay)


def sgd_update(params: list[torch.Tensor], grads: list[torch.Tensor], bufs: list[torch.Tensor], lr: torch.Tensor,
               *, momentum: float, weight_decay: float, nesterov: bool) -> None:
    """``torch.optim.SGD``'s update (no dampening) with the learning rate a 0-dim device tensor.

    ``bufs`` are the momentum buffers, zero before the first step (which makes the first step's
    buffer the gradient, as torch.optim.SGD does).
    """
    if weight_decay:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    if momentum:
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, grads)
        grads = torch._foreach_add(grads, bufs, alpha=momentum) if nesterov else bufs
    torch._foreach_sub_(params, torch._foreach_mul(grads, lr))


class EagerStep:
    """The reference step: torch.optim.SGD, the loss checked on the host every step."""

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig, device: torch.device,
                 channels_last: bool, desc: str, distill: Distillation | None = None) -> None:
        self.net, self.optimizer, self.cfg, self.device, self.distill = net, optimizer, cfg, device, distill
        self.channels_last, self.desc = channels_last, desc
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, correct, count

    def begin_epoch(self, epoch: int, lrs: list[float]) -> None:
        self.epoch, self.lrs, self.index = epoch, lrs, 0
        self.sums.zero_()

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        lr = self.lrs[self.index]
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.cfg.amp):
            logits = self.net(x)
            loss = training_loss(logits, x, y, self.cfg, self.distill)
        if not torch.isfinite(loss):
            raise non_finite(self.desc, loss.item(), self.epoch, self.index, lr)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.sums += torch.stack([loss.detach().double() * len(y), (logits.argmax(1) == y).sum().double(),
                                      torch.tensor(float(len(y)), dtype=torch.float64, device=self.device)])
        self.index += 1

    def end_epoch(self) -> tuple[float, float, float]:
        loss_sum, correct, count = self.sums.tolist()
        return loss_sum, correct, count


class StaticStep:
    """The step on fixed buffers with no host synchronisation; a CUDA graph when ``graph``.

    ``batch_shape``: the (fixed) shape of every training batch; ``max_steps``: the most steps
    an epoch has.
    """

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig, device: torch.device,
                 channels_last: bool, desc: str, distill: Distillation | None = None, *,
                 batch_shape: tuple[int, ...], max_steps: int, graph: bool) -> None:
        self.net, self.cfg, self.device, self.desc, self.distill = net, cfg, device, desc, distill
        self.graph_wanted = graph
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.bufs = []
        if cfg.momentum:
            for p in self.params:
                state = optimizer.state[p]
                if state.get("momentum_buffer") is None:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                self.bufs.append(state["momentum_buffer"])
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.x = torch.zeros(batch_shape, device=device).contiguous(memory_format=memory_format)
        self.y = torch.zeros(batch_shape[0], dtype=torch.int64, device=device)
        self.lrs = torch.zeros(max_steps, device=device)
        self.losses = torch.zeros(max_steps, device=device)
        self.index = torch.zeros(1, dtype=torch.int64, device=device)
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss, correct
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warmed_up = False

    def _body(self) -> None:
        """The step, reading and writing device tensors only (what the graph captures)."""
        lr = self.lrs.index_select(0, self.index)[0]
        with autocast(self.device, self.cfg.amp, cache=False):
            logits = self.net(self.x)
            loss = training_loss(logits, self.x, self.y, self.cfg, self.distill)
        for p in self.params:
            p.grad = None
        loss.backward()
        used = [i for i, p in enumerate(self.params) if p.grad is not None]  # as torch.optim.SGD skips the rest
        params = [self.params[i] for i in used]
        with torch.no_grad():
            sgd_update(params, [p.grad for p in params], [self.bufs[i] for i in used] if self.bufs else [], lr,
                       momentum=self.cfg.momentum, weight_decay=self.cfg.weight_decay,
                       nesterov=self.cfg.nesterov and self.cfg.momentum > 0)
            loss = loss.detach()
            self.losses.index_copy_(0, self.index, loss.view(1))
            self.sums += torch.stack([loss.double() * len(self.y), (logits.argmax(1) == self.y).sum().double()])
            self.index += 1

    def _capture(self) -> None:
        """Capture the step in a CUDA graph (after warming it up once, weights left unchanged)."""
        self.graph = None  # free the previous epoch's graph and its memory first
        if not self.warmed_up:
            # Lazy initialisation (cuBLAS/cuDNN handles, autograd) must not happen during capture:
            # run the step twice on a side stream, then put weights, buffers and RNG back.
            saved = [t.detach().clone() for t in self._state()]
            rng = torch.cuda.get_rng_state(self.device)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._body()
            torch.cuda.current_stream(self.device).wait_stream(side)
            with torch.no_grad():
                for t, s in zip(self._state(), saved):
                    t.copy_(s)
            torch.cuda.set_rng_state(rng, self.device)
            self.index.zero_()
            self.sums.zero_()
            self.warmed_up = True
        for p in self.params:
            p.grad = None
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._body()
        self.graph = graph

    def _state(self) -> list[torch.Tensor]:
        return [*self.net.state_dict().values(), *self.bufs]

    def begin_epoch(self, epoch: int, lrs: list[float]) -> None:
        self.epoch, self.count = epoch, 0
        self.lrs[:len(lrs)].copy_(torch.tensor(lrs, dtype=torch.float32))
        self.index.zero_()
        self.sums.zero_()
        self.losses.zero_()
        if self.graph_wanted:
            self._capture()

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x.copy_(x)
        self.y.copy_(y)
        if self.graph is not None:
            self.graph.replay()
        else:
            self._body()
        self.count += 1

    def end_epoch(self) -> tuple[float, float, float]:
        loss_sum, correct = self.sums.tolist()  # the epoch's one synchronisation
        if not math.isfinite(loss_sum):
            losses = self.losses[:self.count]
            bad = int((~torch.isfinite(losses)).nonzero()[0, 0])
            raise non_finite(self.desc, losses[bad].item(), self.epoch, bad, float(self.lrs[bad]))
        return loss_sum, correct, float(self.count * len(self.y))


def non_finite(desc: str, value: float, epoch: int, step: int, lr: float) -> TrainingError:
    return TrainingError(f"{desc}: the loss became {value} at epoch {epoch + 1}, step {step + 1} (lr {lr:.4g}); "
                         f"lower --lr or check the data")
