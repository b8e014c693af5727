"""``netadjust export``: a trained network of a run, as a file to ship.

The network is the final retraining of a search (``final/{which}_seed{s}.weights.pt``) or the
network ``netadjust train`` trained (``checkpoint.pt``). Formats:

- ``onnx``: ``torch.onnx.export`` with a dynamic batch dimension; the file's metadata holds
  the widths and settings (``netadjust`` key, JSON). After writing, onnxruntime runs it on a
  batch and its logits must match PyTorch's to a relative error below 1e-4
  (``pip install -e ".[export]"`` for onnx, onnxscript and onnxruntime);
- ``torchscript``: ``torch.jit.trace``, the metadata as the extra file ``netadjust.json``;
  checked the same way after loading it back;
- ``state-dict``: ``torch.save`` of ``{"model": state dict, "widths", "arch", ...}``, which
  ``get_arch(**arch).build(widths)`` loads (and ``--distill-from`` reads).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .errors import ConfigError, NetadjustError
from .io import save_torch_atomic
from .models import get_arch
from .rundir import RunDir

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript", "state-dict")
TOLERANCE = 1e-4  # largest allowed relative error of the exported logits


class ExportError(NetadjustError):
    """The exported file does not compute what the PyTorch network computes."""


def trained_file(run_dir: str | Path, which: str = "searched", seed: int | None = None) -> Path:
    """The weights file of ``which`` (original / searched) at ``seed`` (default: the run's first)
    in a search's run directory, or the checkpoint of a ``netadjust train`` directory."""
    run = RunDir(run_dir)
    if not run.exists():
        raise ConfigError(f"{run.path} does not exist or is empty; pass a run directory of `netadjust search` "
                          f"or `netadjust train`")
    single = run.path / "checkpoint.pt"
    if single.exists() and not run.final.is_dir():
        if not run.summary.exists():
            raise ConfigError(f"{run.path}: the training has not finished (no summary.json); finish it first")
        return single
    found = sorted(run.final.glob(f"{which}_seed*.weights.pt")) if run.final.is_dir() else []
    if not found:
        raise ConfigError(f"{run.path} holds no trained {which} network: a search saves them in final/ when its "
                          f"final comparison runs (--final-epochs > 0; runs made before netadjust saved them "
                          f"have none)")
    seeds = sorted(int(p.name.removeprefix(f"{which}_seed").removesuffix(".weights.pt")) for p in found)
    chosen = seeds[0] if seed is None else seed
    if chosen not in seeds:
        raise ConfigError(f"{run.path} has no {which} network for --seed {seed}; it has seed(s) "
                          f"{', '.join(map(str, seeds))}")
    return run.final_weights(which, chosen)


def trained_state(model: nn.Module, widths: Mapping[str, int], arch: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """What a trained-network file holds (a final retraining's weights, a state-dict export):
    ``model`` (its state dict, on the CPU), ``widths``, ``arch`` (get_arch settings) and ``extra``;
    :func:`load_trained` reads it, as it reads ``netadjust train``'s checkpoint (the same keys)."""
    return {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "widths": dict(widths),
            "arch": dict(arch), **extra}


def load_trained(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The network saved at ``path`` (in eval mode, on the CPU) and its metadata."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    missing = [k for k in ("model", "widths", "arch") if not isinstance(state, dict) or k not in state]
    if missing:
        raise ConfigError(f"{path} is not a trained network of netadjust (missing {', '.join(missing)}); "
                          f"pass a final/*.weights.pt file, a `netadjust train` checkpoint.pt or a state-dict export")
    settings = dict(state["arch"])
    arch = get_arch(settings.pop("arch"), **settings)
    widths = arch.validate(state["widths"])
    model = arch.build(widths)
    model.load_state_dict(state["model"])
    meta = {"netadjust": __version__, "arch": state["arch"], "widths": widths,
            "macs": arch.macs(widths), "params": arch.params(widths),
            "input_shape": [arch.in_channels, arch.input_size, arch.input_size], "source": str(path),
            **{k: state[k] for k in ("test_acc", "seed", "which") if k in state}}
    return model.eval(), meta


def export(model: nn.Module, meta: dict[str, Any], out: str | Path, fmt: str = "onnx") -> float:
    """Write ``model`` to ``out`` in format ``fmt`` with ``meta``; returns the relative error of
    the written file's logits against PyTorch's on a random batch (checked below 1e-4; not
    applicable to ``state-dict``: 0)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    if fmt == "state-dict":
        extra = {k: v for k, v in meta.items() if k not in ("widths", "arch", "source")}
        save_torch_atomic(out, trained_state(model, meta["widths"], meta["arch"], **extra))
        return 0.0
    batch = torch.randn((4, *meta["input_shape"]), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(batch)
    written = out.with_name(out.name + ".unchecked")  # becomes `out` once its logits are checked
    if fmt == "onnx":
        got = _onnx(model, meta, written, batch)
    else:
        with _quiet():  # torch.jit is deprecated in favour of torch.export, and says so
            traced = torch.jit.trace(model, batch[:1])
            torch.jit.save(traced, str(written), _extra_files={"netadjust.json": json.dumps(meta)})
            with torch.no_grad():
                got = torch.jit.load(str(written))(batch)
    error = float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-12))
    if not error < TOLERANCE:
        raise ExportError(f"the exported {fmt} model's logits differ from PyTorch's by a relative error of "
                          f"{error:.2e} (allowed {TOLERANCE:.0e}); not written to {out} (left as {written} for "
                          f"inspection)")
    os.replace(written, out)
    return error


def _onnx(model: nn.Module, meta: dict[str, Any], out: Path, batch: torch.Tensor) -> torch.Tensor:
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ConfigError(f"ONNX export needs onnx, onnxscript and onnxruntime ({exc}); "
                          f"pip install -e '.[export]', or use --format torchscript") from exc
    batch_dim = torch.export.Dim("batch", min=1)
    with _quiet():
        torch.onnx.export(model, (batch,), str(out), dynamo=True, input_names=["images"], output_names=["logits"],
                          dynamic_shapes=({0: batch_dim},), verbose=False)
    proto = onnx.load(str(out))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "netadjust", json.dumps(meta)
    onnx.save(proto, str(out))
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: batch.numpy()})
    return torch.from_numpy(logits)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' progress prints and warnings (fixed shapes traced as constants, optional
    operator sets skipped) go to the debug log instead of the user's terminal."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir", "torch._dynamo", "torch.export")]
    levels = [logger.level for logger in loggers]
    out = io.StringIO()
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with contextlib.redirect_stdout(out), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
    for line in out.getvalue().splitlines() + [str(w.message) for w in caught]:
        log.debug("exporter: %s", line)
