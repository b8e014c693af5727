"""The run directory: everything a search writes, and all a report reads.

Layout::

    RUN_DIR/config.json         the SearchConfig (flat field names), written at the start
    RUN_DIR/records.jsonl       one JSON object per completed round
    RUN_DIR/checkpoints/round{t}.pt   trained weights of round t with their widths and config
    RUN_DIR/checkpoints/current.pt    the training in progress, saved after every epoch
    RUN_DIR/final/*.pt          the same for a final retraining in progress
    RUN_DIR/widths_final.json   the searched widths
    RUN_DIR/final/{original,searched}_seed{s}.json   final retraining results, one per run
    RUN_DIR/summary.json        MACs of original and searched widths, final accuracies

Every file is written atomically (temporary file + rename), so a crash never leaves half a
file; a file that is nonetheless unreadable gives an error naming it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import logging

from .errors import ConfigError
from .io import save_torch_atomic, write_bytes_atomic, write_json_atomic

log = logging.getLogger(__name__)


class RunDir:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.records = self.path / "records.jsonl"
        self.widths_final = self.path / "widths_final.json"
        self.summary = self.path / "summary.json"
        self.checkpoints = self.path / "checkpoints"
        self.final = self.path / "final"

    def exists(self) -> bool:
        return self.path.is_dir() and any(self.path.iterdir())

    def checkpoint(self, round_index: int) -> Path:
        return self.checkpoints / f"round{round_index}.pt"

    @property
    def current(self) -> Path:
        return self.checkpoints / "current.pt"

    # -- reading ---------------------------------------------------------------------
    def read_json(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path} is missing: is {self.path} a netadjust run directory?") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is corrupt ({exc}); restore it or start a new run") from None

    def read_records(self) -> list[dict[str, Any]]:
        """Completed rounds, in order ([] before the first)."""
        if not self.records.exists():
            return []
        out = []
        for n, line in enumerate(self.records.read_text().splitlines(), 1):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                raise ConfigError(f"{self.records} line {n} is corrupt; delete that line (and the ones after it) "
                                  f"to resume from the round before") from None
        for i, rec in enumerate(out):
            if rec.get("round") != i:
                raise ConfigError(f"{self.records} line {i + 1} holds round {rec.get('round')!r}, expected {i}")
        return out

    # -- writing (rank 0 only) -------------------------------------------------------
    def write_json(self, path: Path, obj: Any) -> None:
        write_json_atomic(path, obj)

    def append_record(self, record: dict[str, Any]) -> None:
        """Add one round's record; the file is rewritten atomically (it holds a few KB per round)."""
        old = self.records.read_bytes() if self.records.exists() else b""
        write_bytes_atomic(self.records, old + (json.dumps(record) + "\n").encode())

    def save_checkpoint(self, round_index: int, state: dict[str, Any]) -> None:
        save_torch_atomic(self.checkpoint(round_index), state)

    def training_state(self, path: Path, expect: dict[str, Any]) -> dict[str, Any] | None:
        """The saved state of an interrupted training at ``path`` if its metadata equals ``expect``.

        A corrupt file is not fatal: the training it belongs to restarts from its first epoch
        (the previous good state), with a warning naming the file.
        """
        if not path.exists():
            return None
        import torch

        try:
            state = torch.load(path, weights_only=True)
        except Exception as exc:  # truncated zip, bad pickle: all mean "unreadable"
            log.warning("%s is unreadable (%s): restarting that training from its first epoch", path,
                        type(exc).__name__)
            return None
        if any(state.get(k) != v for k, v in expect.items()):
            return None
        return state
