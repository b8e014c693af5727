"""``netadjust train``: one width configuration, trained into a directory.

The directory gets ``config.json`` (the settings), ``checkpoint.pt`` (after every epoch:
weights, optimiser, widths, settings) and ``summary.json`` (test and held-out metrics, MACs,
parameters, seconds).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from .config import SearchConfig
from .errors import DataError
from .session import open_run, open_session
from .train import build_and_train


def train_single(cfg: SearchConfig, *, overwrite: bool = False, progress: bool = True,
                 in_channels: int | None = None) -> dict[str, Any]:
    """Train the widths ``cfg`` names (``cfg.widths``, or the family's) into ``cfg.out``; returns
    the summary it writes. Only the architecture, data, training and ``seed`` settings matter.
    ``in_channels``: refuse a data set whose images have another number of channels."""
    session = open_session(cfg)
    if in_channels is not None and in_channels != session.data.in_channels:
        raise DataError(f"--in-channels {in_channels} does not match {session.data.name}, whose images have "
                        f"{session.data.in_channels} channel(s); drop --in-channels")
    run, _ = open_run(session, overwrite=overwrite)
    arch, widths, env = session.arch, session.widths, session.env
    start = time.perf_counter()
    result = build_and_train(arch, widths, session.data, cfg.train, seed=cfg.seed, device=session.device, env=env,
                             progress=progress,
                             **run.trainer_state(run.path / "checkpoint.pt", write=env.is_main, widths=widths,
                                                 arch=arch.settings(), config=cfg.to_flat()))
    test, heldout = result.metrics["test"], result.metrics["heldout"]
    summary = {"test_acc": test.top1, "test_top5": test.top5, "test_loss": test.loss, "heldout_acc": heldout.top1,
               "heldout_loss": heldout.loss, "macs": arch.macs(widths), "params": arch.params(widths),
               "seconds": time.perf_counter() - start, "epochs": cfg.train.epochs, "widths": widths,
               "arch": arch.settings(), "dataset": session.data.name, "seed": cfg.seed,
               "train": dataclasses.asdict(cfg.train)}
    if env.is_main:
        run.write_json(run.summary, summary)
    return summary
