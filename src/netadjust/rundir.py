"""The run directory: everything a search (or ``netadjust train``) writes, and all a report reads.

Layout of a search::

    RUN_DIR/config.json         the SearchConfig (flat field names), written at the start
    RUN_DIR/records.jsonl       one RoundRecord (records.py) per completed round
    RUN_DIR/checkpoints/round{t}.pt   trained weights of round t with their widths and config
    RUN_DIR/checkpoints/current.pt    the training in progress, saved after every epoch
    RUN_DIR/widths_final.json   the searched widths
    RUN_DIR/final/{original,searched}_seed{s}.json   final retraining results (FinalRun)
    RUN_DIR/final/{original,searched}_seed{s}.weights.pt   its trained weights (for export, distillation)
    RUN_DIR/final/*.pt          a final retraining in progress, saved after every epoch
    RUN_DIR/summary.json        the Summary: MACs of original and searched widths, final accuracies
    RUN_DIR/latency.json        the latency lookup table (latency runs), reused on resume
    RUN_DIR/report/             plots and report.md (netadjust report)

``netadjust train`` writes ``config.json``, ``checkpoint.pt`` and ``summary.json``.

Every file is written atomically (temporary file + rename), so a crash never leaves half a
file; a file that is nonetheless unreadable gives an error naming it. A temporary file left by
a process that was killed mid-write is removed when the directory is opened again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .io import TMP_SUFFIX, save_torch_atomic, write_bytes_atomic, write_json_atomic
from .records import FinalRun, RoundRecord, Summary

log = logging.getLogger(__name__)

# What a run may hold: these files at the top, and these folders with files of these suffixes.
# Anything else means the directory is not (only) a run, and --overwrite refuses to delete it.
RUN_FILES = {"config.json", "records.jsonl", "widths_final.json", "summary.json", "checkpoint.pt", "latency.json"}
RUN_FOLDERS = {"checkpoints": {".pt"}, "final": {".json", ".pt"}, "report": {".png", ".md"}}


class RunDir:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.records = self.path / "records.jsonl"
        self.widths_final = self.path / "widths_final.json"
        self.summary = self.path / "summary.json"
        self.checkpoints = self.path / "checkpoints"
        self.final = self.path / "final"
        self.latency = self.path / "latency.json"

    def exists(self) -> bool:
        """Whether the directory exists and holds anything (an empty one is free to use)."""
        return self.path.is_dir() and any(self.path.iterdir())

    def check_usable(self, flag: str = "--out") -> None:
        """Refuse a path that is a file (or under one) before anything is trained."""
        for parent in (self.path, *self.path.parents):
            if parent.exists() and not parent.is_dir():
                raise ConfigError(f"{flag} {self.path}: {parent} is a file, not a directory; choose another {flag}")

    def checkpoint(self, round_index: int) -> Path:
        return self.checkpoints / f"round{round_index}.pt"

    @property
    def current(self) -> Path:
        return self.checkpoints / "current.pt"

    def final_result(self, name: str, seed: int) -> Path:
        return self.final / f"{name}_seed{seed}.json"

    def final_weights(self, name: str, seed: int) -> Path:
        """The trained network of a final retraining: ``model`` (state dict), ``widths``, ``arch``
        (get_arch settings), ``test_acc``, the same keys as ``netadjust train``'s checkpoint."""
        return self.final / f"{name}_seed{seed}.weights.pt"

    # -- what is in it ----------------------------------------------------------------
    def foreign_files(self) -> list[Path]:
        """Files and folders in the directory that a run does not write."""
        foreign = []
        for entry in sorted(self.path.iterdir()):
            if entry.is_dir() and entry.name in RUN_FOLDERS:
                suffixes = RUN_FOLDERS[entry.name]
                foreign += [p for p in sorted(entry.iterdir())
                            if not (p.is_file() and (p.suffix in suffixes or _is_tmp(p)))]
            elif not (entry.is_file() and (entry.name in RUN_FILES or _is_tmp(entry))):
                foreign.append(entry)
        return foreign

    def remove(self) -> list[str]:
        """Delete this run directory (for ``--overwrite``); returns what it held.

        Only a directory that holds a run's ``config.json`` and nothing but a run's files is
        deleted: anything else raises a :class:`ConfigError` listing what would have been lost.
        """
        if not self.config.is_file():
            raise ConfigError(f"--overwrite refuses to delete {self.path}: it holds no config.json, so it is not a "
                              f"netadjust run directory; remove it yourself or choose another --out")
        foreign = self.foreign_files()
        if foreign:
            shown = ", ".join(str(p.relative_to(self.path)) for p in foreign[:5])
            more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
            raise ConfigError(f"--overwrite refuses to delete {self.path}: it holds files a run does not write "
                              f"({shown}{more}); remove them yourself or choose another --out")
        held = sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file())
        shutil.rmtree(self.path)
        return held

    def clean_temporary(self) -> None:
        """Remove temporary files of atomic writes that a killed process left behind."""
        if self.path.is_dir():
            for tmp in self.path.rglob(f".*{TMP_SUFFIX}"):
                tmp.unlink(missing_ok=True)
                log.debug("removed stale temporary file %s", tmp)

    # -- reading ---------------------------------------------------------------------
    def read_json(self, path: Path) -> Any:
        try:
            return json.loads(path.read_bytes().decode())
        except FileNotFoundError:
            raise ConfigError(f"{path} is missing: is {self.path} a netadjust run directory?") from None
        except IsADirectoryError:
            raise ConfigError(f"{path} is a directory, expected a file: is {self.path} a netadjust run "
                              f"directory?") from None
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            raise ConfigError(f"{path} is corrupt ({exc}); restore it or start a new run") from None

    def read_object(self, path: Path) -> dict[str, Any]:
        data = self.read_json(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path} is corrupt: expected a JSON object, got {type(data).__name__}")
        return data

    def read_config(self) -> dict[str, Any]:
        """The stored settings (flat field names)."""
        if not self.path.is_dir():
            what = "is a file" if self.path.exists() else "does not exist"
            raise ConfigError(f"{self.path} {what}; expected a run directory (the --out of a search)")
        return self.read_object(self.config)

    def read_records(self) -> list[RoundRecord]:
        """Completed rounds, in order ([] before the first); a damaged line is named."""
        if not self.records.exists():
            return []
        out = []
        for n, line in enumerate(self.records.read_bytes().splitlines(), 1):
            where = f"{self.records} line {n} is corrupt"
            fix = "; delete that line (and the ones after it) to resume from the round before"
            try:
                data = json.loads(line.decode())
            except (ValueError, UnicodeDecodeError):
                raise ConfigError(f"{where}: not a JSON object{fix}") from None
            try:
                out.append(RoundRecord.from_dict(data, where=where))
            except ConfigError as exc:
                raise ConfigError(f"{exc}{fix}") from None
        for i, rec in enumerate(out):
            if rec.round != i:
                raise ConfigError(f"{self.records} line {i + 1} holds round {rec.round}, expected {i}")
        return out

    def read_summary(self) -> Summary | None:
        if not self.summary.exists():
            return None
        return Summary.from_dict(self.read_object(self.summary), where=f"{self.summary} is corrupt")

    def read_final(self, path: Path) -> FinalRun:
        return FinalRun.from_dict(self.read_object(path), where=f"{path} is corrupt")

    def read_finals(self) -> dict[str, FinalRun]:
        """Every final retraining result, by file stem (``original_seed0``, ...)."""
        if not self.final.is_dir():
            return {}
        return {p.stem: self.read_final(p) for p in sorted(self.final.glob("*.json"))}

    # -- writing (rank 0 only) -------------------------------------------------------
    def write_json(self, path: Path, obj: Any) -> None:
        write_json_atomic(path, obj)

    def append_record(self, record: RoundRecord) -> None:
        """Add one round's record; the file is rewritten atomically (it holds a few KB per round)."""
        old = self.records.read_bytes() if self.records.exists() else b""
        write_bytes_atomic(self.records, old + (json.dumps(record.to_dict()) + "\n").encode())

    def save_checkpoint(self, round_index: int, state: dict[str, Any]) -> None:
        save_torch_atomic(self.checkpoint(round_index), state)

    def trainer_state(self, path: Path, *, write: bool, **meta: Any) -> dict[str, Any]:
        """Keyword arguments of ``train.train_model`` that save the training after every epoch
        to ``path`` (with ``meta``; only where ``write``, i.e. on rank 0) and resume it from
        there when its ``meta`` matches."""
        def save(state: dict[str, Any]) -> None:
            if write:
                save_torch_atomic(path, {**meta, **state})

        return {"checkpoint": save, "resume": self.training_state(path, meta)}

    def training_state(self, path: Path, expect: dict[str, Any]) -> dict[str, Any] | None:
        """The saved state of an interrupted training at ``path`` if its metadata equals ``expect``.

        A corrupt file, or one that loads but is not a training state, is not fatal: the
        training it belongs to restarts from its first epoch, with a warning naming the file.
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
        needed = ("epoch", "model", "optimizer", "rng", "history")
        if not isinstance(state, dict) or any(k not in state for k in needed):
            log.warning("%s is not a training checkpoint: restarting that training from its first epoch", path)
            return None
        if any(state.get(k) != v for k, v in expect.items()):
            return None
        return state


def _is_tmp(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(TMP_SUFFIX)
