"""Training and evaluation of one width configuration.

The official code's recipe (docs/method.md#training-recipe): SGD with momentum, cosine learning
rate from ``lr`` to ``min_lr`` (after an optional linear warm-up), weight decay, optional label
smoothing, and channel dropout as a regulariser at every probe point, its rate ramped linearly
over the epochs and scaled by depth ((i + 1) / L for the i-th of L probes). The trainer is the
only place a model is moved to its device and wrapped in DDP.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .config import TrainConfig
from .data import DataSource
from .dist import DistEnv, all_reduce_sum, broadcast_buffers
from .errors import DataError
from .models import Arch, Probes, SegmentedNet
from .steps import Distillation, EagerStep, StaticStep, autocast, sgd

log = logging.getLogger(__name__)


@dataclass
class Metrics:
    """Mean cross-entropy and top-1 / top-5 accuracy (fractions in [0, 1]) over ``count`` images."""

    loss: float
    top1: float
    top5: float
    count: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class TrainResult:
    model: SegmentedNet  # trained, unwrapped, on the training device, in eval mode
    metrics: dict[str, Metrics]  # split name -> metrics after training
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per epoch
    seconds: float = 0.0


DIVERGED = 10.0  # a mean loss this many times uniform guessing's ln(classes) means training went wrong


def warn_if_diverged(what: str, loss: float, classes: int) -> bool:
    """Warn (and return True) when a finite ``loss`` is far above that of uniform guessing."""
    chance = math.log(max(classes, 2))
    if loss > DIVERGED * chance:
        log.warning("%s loss is %.3g, %.0f times that of uniform guessing (%.2f): training diverged; lower --lr "
                    "or check the data", what, loss, loss / chance, chance)
        return True
    return False


def lr_at(cfg: TrainConfig, progress: float) -> float:
    """Learning rate at ``progress`` epochs into training (fractional)."""
    if progress < cfg.warmup_epochs:
        return cfg.lr * progress / cfg.warmup_epochs
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-12)
    t = min((progress - cfg.warmup_epochs) / span, 1.0)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * t))


@torch.no_grad()
def evaluate(model: nn.Module, data: DataSource, split: str, *, batch_size: int = 256,
             device: torch.device = torch.device("cpu"), env: DistEnv = DistEnv(), amp: bool = True) -> Metrics:
    """Loss, top-1 and top-5 of ``model`` on ``split`` (all ranks get the same numbers)."""
    was_training = model.training
    model.eval()
    channels_last = next(model.parameters()).is_contiguous(memory_format=torch.channels_last) and device.type == "cuda"
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, count
    inner = model.module if hasattr(model, "module") else model
    with Probes(inner).off():
        for x, y in data.batches(split, batch_size=batch_size, train=False, device=device,
                                 rank=env.rank, world_size=env.world_size):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, amp):
                logits = model(x).float()
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hits = top == y[:, None]
            sums += torch.stack([F.cross_entropy(logits, y, reduction="sum").double(),
                                 hits[:, 0].sum().double(), hits.any(1).sum().double(),
                                 torch.tensor(float(len(y)), dtype=torch.float64, device=device)])
    model.train(was_training)
    loss, top1, top5, n = all_reduce_sum(sums.tolist(), device)
    if n == 0:
        raise DataError(f"the {split} split of {data.name} is empty")
    return Metrics(loss / n, top1 / n, top5 / n, int(n))


def check_batch_size(data: DataSource, split: str, batch_size: int, world_size: int = 1) -> None:
    size = data.size(split)
    if batch_size * world_size > size:
        raise DataError(f"--batch-size {batch_size}{f' x {world_size} ranks' if world_size > 1 else ''} is larger "
                        f"than the {split} split of {data.name} ({size} images); lower --batch-size")


STEPPERS = ("auto", "eager", "static")


class Training:
    """One network's training, run step by step so that several can share a GPU.

    :meth:`run` is a generator that yields after every step and leaves the outcome in
    :attr:`result`; :func:`train_model` runs one to the end, :func:`train_concurrently` several.
    ``stepper``: "eager" (:class:`~netadjust.steps.EagerStep`), "static"
    (:class:`~netadjust.steps.StaticStep`, a CUDA graph on CUDA) or "auto": static with a graph
    where it is correct and fast (CUDA, one process, no ``torch.compile``, ``cfg.cuda_graphs``),
    eager elsewhere. ``distill``: train against a teacher's soft targets as well as the labels.
    """

    def __init__(self, model: SegmentedNet, data: DataSource, cfg: TrainConfig, *, seed: int = 0,
                 device: torch.device = torch.device("cpu"), env: DistEnv = DistEnv(),
                 train_split: str = "train", eval_splits: tuple[str, ...] = ("heldout", "test"),
                 resume: Mapping[str, Any] | None = None,
                 checkpoint: Callable[[dict[str, Any]], None] | None = None,
                 progress: bool = True, desc: str = "train", stepper: str = "auto",
                 distill: Distillation | None = None) -> None:
        if stepper not in STEPPERS:
            raise ValueError(f"stepper must be one of {STEPPERS}, got {stepper!r}")
        check_batch_size(data, train_split, cfg.batch_size, env.world_size)
        self.model, self.data, self.cfg, self.seed, self.device, self.env = model, data, cfg, seed, device, env
        self.train_split, self.eval_splits, self.resume, self.checkpoint = train_split, eval_splits, resume, checkpoint
        self.progress, self.desc, self.distill = progress, desc, distill
        graphs = cfg.cuda_graphs and device.type == "cuda" and not env.enabled and not cfg.compile
        self.kind = stepper if stepper != "auto" else ("static" if graphs else "eager")
        # Its own CUDA stream, so that trainings run side by side can overlap on the GPU.
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.result: TrainResult | None = None

    def on_stream(self):
        """The context each piece of this training's GPU work runs in (no piece spans a yield)."""
        return torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()

    def run(self) -> Iterator[None]:
        """Train to the end, yielding after every step; the outcome is then :attr:`result`."""
        with self.on_stream():
            self._start()
        for epoch in range(self.first_epoch, self.cfg.epochs):
            with self.on_stream():
                batches = self._begin_epoch(epoch)
            while True:
                with self.on_stream():
                    batch = next(batches, None)
                    if batch is None:
                        break
                    self.stepper.step(*batch)
                    self.bar.update()
                yield
            with self.on_stream():
                self._end_epoch(epoch)
        with self.on_stream():
            self._finish()

    def _start(self) -> None:
        cfg, model, device, env, data = self.cfg, self.model, self.device, self.env, self.data
        self.start_time = time.perf_counter()
        data.to_device(device)
        model.to(device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # data and weights in place before any stream reads them
        channels_last = cfg.channels_last and device.type == "cuda"
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self.optimizer = sgd(model, cfg)
        self.probes = Probes(model)
        self.history: list[dict[str, float]] = []
        self.first_epoch = 0
        torch.manual_seed(self.seed)  # channel-dropout masks
        if self.resume is not None:
            model.load_state_dict(self.resume["model"])
            self.optimizer.load_state_dict(self.resume["optimizer"])
            torch.set_rng_state(self.resume["rng"])
            self.history = list(self.resume["history"])
            self.first_epoch = self.resume["epoch"]
        self.net: nn.Module = model
        if env.enabled:
            self.net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                           else None)
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.steps = data.num_batches(self.train_split, batch_size=cfg.batch_size, train=True,
                                      world_size=env.world_size)
        if self.distill is not None:
            self.distill.teacher.to(device).eval()
            if channels_last:
                self.distill.teacher.to(memory_format=torch.channels_last)
        if self.kind == "eager":
            self.stepper = EagerStep(self.net, self.optimizer, cfg, device, channels_last, self.desc, self.distill)
        else:
            shape = (cfg.batch_size, data.in_channels, data.input_size, data.input_size)
            self.stepper = StaticStep(self.net, self.optimizer, cfg, device, channels_last, self.desc, self.distill,
                                      batch_shape=shape, max_steps=self.steps, graph=device.type == "cuda")

    def _begin_epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cfg, steps = self.cfg, self.steps
        self.epoch_start = time.perf_counter()
        self.net.train()
        self.probes.set_regulariser(cfg.drop_rate, epoch, cfg.epochs)
        self.stepper.begin_epoch(epoch, [lr_at(cfg, epoch + step / steps) for step in range(steps)])
        self.bar = tqdm(total=steps, desc=f"{self.desc} {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True,
                        disable=None if self.progress and self.env.is_main else True)  # None: no TTY, no bar
        return iter(self.data.batches(self.train_split, batch_size=cfg.batch_size, train=True, device=self.device,
                                      epoch=epoch, seed=self.seed, rank=self.env.rank, world_size=self.env.world_size))

    def _end_epoch(self, epoch: int) -> None:
        cfg, steps = self.cfg, self.steps
        self.bar.close()
        loss_sum, correct, count = all_reduce_sum(list(self.stepper.end_epoch()), self.device)
        entry = {"epoch": epoch + 1, "lr": lr_at(cfg, epoch + (steps - 1) / steps), "train_loss": loss_sum / count,
                 "train_acc": correct / count, "seconds": time.perf_counter() - self.epoch_start}
        self.history.append(entry)
        if self.env.is_main:
            log.info("%s epoch %3d/%d  lr %.4f  loss %.4f  acc %6.2f%%  %6.1fs", self.desc, epoch + 1, cfg.epochs,
                     entry["lr"], entry["train_loss"], 100 * entry["train_acc"], entry["seconds"])
            warn_if_diverged(f"{self.desc} epoch {epoch + 1}: training", entry["train_loss"], self.data.num_classes)
        if self.checkpoint is not None:
            self.checkpoint({"epoch": epoch + 1, "model": self.model.state_dict(),
                             "optimizer": self.optimizer.state_dict(), "rng": torch.get_rng_state(),
                             "history": self.history})

    def _finish(self) -> None:
        cfg, model, data = self.cfg, self.model, self.data
        self.probes.set_regulariser(0.0, 0, 1)
        broadcast_buffers(model)  # every rank evaluates (and goes on with) the network rank 0 saves
        model.eval()
        metrics = {split: evaluate(model, data, split, batch_size=max(cfg.batch_size, 256), device=self.device,
                                   env=self.env, amp=cfg.amp)
                   for split in self.eval_splits if data.size(split) > 0}
        if self.env.is_main:
            for split, m in metrics.items():
                warn_if_diverged(f"{self.desc}: {split}", m.loss, data.num_classes)
        self.result = TrainResult(model, metrics, self.history, time.perf_counter() - self.start_time)


def train_model(model: SegmentedNet, data: DataSource, cfg: TrainConfig, **kwargs: Any) -> TrainResult:
    """Train ``model`` on ``train_split`` for ``cfg.epochs`` and evaluate it on ``eval_splits``
    (the keyword arguments of :class:`Training`).

    ``checkpoint(state)``, when given, is called after every epoch with everything needed to
    continue (pass it back as ``resume``): model and optimizer state, RNG state, history.
    A loss that is NaN or infinite raises :class:`TrainingError` naming the epoch and step;
    the last checkpoint written stays the last good one.
    """
    return train_concurrently([Training(model, data, cfg, **kwargs)])[0]


def train_concurrently(trainings: list[Training], on_end: Callable[[Training], None] | None = None
                       ) -> list[TrainResult]:
    """Run ``trainings`` to the end and return their results, in order (see :func:`run_together`,
    which calls ``on_end``)."""
    for _ in run_together(trainings, on_end):
        pass
    return [t.result for t in trainings]


def run_together(trainings: list[Training], on_end: Callable[[Training], None] | None = None) -> Iterator[None]:
    """Run ``trainings``, yielding after every step of any of them; ``on_end(training)`` is called
    as each one ends (its ``result`` set).

    On CUDA they run side by side, a step of each in turn, each on its own stream, so that the
    GPU overlaps their kernels (small networks leave most of it idle). Elsewhere they run one
    after the other, which keeps each one's random streams, and so its result, the same as if
    it ran alone.
    """
    side_by_side = [t for t in trainings if t.stream is not None]
    if len(side_by_side) > 1:
        for t in side_by_side:
            t.progress = False  # one bar per epoch would interleave; the epoch lines remain
    for t in trainings:
        if t.stream is None:
            yield from _ending(t, on_end)
    yield from interleave([_ending(t, on_end) for t in side_by_side])


def _ending(training: Training, on_end: Callable[[Training], None] | None) -> Iterator[None]:
    yield from training.run()
    if on_end is not None:
        on_end(training)


def interleave(runs: list[Iterator]) -> Iterator[None]:
    """Advance every iterator of ``runs`` by one in turn until all are exhausted; yield after each turn."""
    done = object()
    running = list(runs)
    while running:
        running = [r for r in running if next(r, done) is not done]
        yield


def build_and_train(arch: Arch, widths: Mapping[str, int], data: DataSource, cfg: TrainConfig, *,
                    seed: int = 0, **kwargs: Any) -> TrainResult:
    """Build ``arch`` at ``widths`` with weights drawn from ``seed``, then :func:`train_model`."""
    torch.manual_seed(seed)
    return train_model(arch.build(widths), data, cfg, seed=seed, **kwargs)
