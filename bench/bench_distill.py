"""Distillation in the final training: does a smaller network learn more from the original's soft targets?

The paper's ResNet-18 0.8x row (ImageNet: 69.41% without, 71.00% with distillation) is the
model for this check. Per seed: the original widths are trained (the teacher), then a smaller
student (the family's widths scaled to ``--budget`` of the MACs, as a search's starting point at
that budget) is trained twice with the same seed, once on the labels alone and once with
``--distill-from original``'s loss (alpha 0.5, temperature 4, the defaults). Reported: the
students' test accuracies, paired seed by seed.

    python bench/bench_distill.py            # ResNet-20 x0.5, Fashion-MNIST 4k images, 5 seeds (CPU: ~10 min)
    python bench/bench_distill.py --quick    # digits, a minute
Writes bench/RESULTS_distill.md (or --out) and the JSON beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import torch

from machine import device_name
from netadjust.budget import fit_budget
from netadjust.config import SearchConfig, TrainConfig
from netadjust.data import load_dataset
from netadjust.models import get_arch
from netadjust.stats import mean_std, paired_difference
from netadjust.steps import Distillation
from netadjust.train import train_model

SETTINGS = dict(arch="resnet20", width_mult=0.5, dataset="fashion-mnist", train_subset=4000, epochs=8, budget=0.64)
QUICK = dict(arch="resnet20", width_mult=0.25, dataset="digits", train_subset=512, epochs=3, budget=0.64)


def run(s: dict, seeds: int, data_dir: str | None, alpha: float, temperature: float) -> dict:
    out: dict = {"settings": {**s, "alpha": alpha, "temperature": temperature}, "seeds": {}}
    for seed in range(seeds):
        data = load_dataset(s["dataset"], data_dir=data_dir, heldout_fraction=0.02, seed=seed,
                            train_subset=s["train_subset"])
        arch = get_arch(s["arch"], num_classes=data.num_classes, in_channels=data.in_channels,
                        input_size=data.input_size, width_mult=s["width_mult"])
        original = arch.default_widths()
        student = fit_budget(arch, original, s["budget"] * arch.macs(original),
                             min_width=min(SearchConfig().min_width, *original.values()))
        cfg = TrainConfig(epochs=s["epochs"], device="cpu")

        def train(widths, distill=None):
            torch.manual_seed(seed)
            return train_model(arch.build(widths), data, cfg, seed=seed, train_split="full", eval_splits=("test",),
                               progress=False, distill=distill)

        teacher = train(original)
        plain = train(student)
        taught = train(student, Distillation(teacher.model.eval(), alpha, temperature))
        out["seeds"][str(seed)] = {"teacher": teacher.metrics["test"].top1, "student": plain.metrics["test"].top1,
                                   "distilled": taught.metrics["test"].top1, "teacher_macs": arch.macs(original),
                                   "student_macs": arch.macs(student)}
        row = out["seeds"][str(seed)]
        print(f"seed {seed}: teacher {100 * row['teacher']:.2f}%, student {100 * row['student']:.2f}%, "
              f"distilled {100 * row['distilled']:.2f}%", flush=True)
    return out


def markdown(d: dict, command: str) -> str:
    s, rows = d["settings"], list(d["seeds"].values())
    lines = ["# Distillation in the final training", "",
             f"- date: {dt.date.today().isoformat()}; machine: {device_name()}, torch {torch.__version__}", f"- command: `{command}`",
             f"- {s['arch']} x{s['width_mult']} on {s['dataset']} (training subset {s['train_subset']}), "
             f"{s['epochs']}-epoch trainings; teacher: the original widths ({rows[0]['teacher_macs']:,} MACs); "
             f"student: uniform widths at {s['budget']}x MACs ({rows[0]['student_macs']:,}); distillation alpha "
             f"{s['alpha']}, temperature {s['temperature']}", "",
             "| seed | teacher % | student % | distilled student % |", "|---:|---:|---:|---:|"]
    for i, r in enumerate(rows):
        lines.append(f"| {i} | {100 * r['teacher']:.2f} | {100 * r['student']:.2f} | {100 * r['distilled']:.2f} |")
    summary = {k: mean_std([r[k] for r in rows]) for k in ("teacher", "student", "distilled")}
    gain, ci = paired_difference([r["distilled"] for r in rows], [r["student"] for r in rows])
    wins = sum(r["distilled"] > r["student"] for r in rows)
    lines += ["", "Test accuracy (mean ± std): " + ", ".join(f"{k} {100 * m:.2f} ± {100 * sd:.2f}"
                                                            for k, (m, sd) in summary.items()) + ".",
              f"Distilled minus plain student: {100 * gain:+.2f} points"
              + (f", 95% CI [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]" if ci else "")
              + f", better on {wins} of {len(rows)} seeds (paired by seed).", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--alpha", type=float, default=SearchConfig().distill_alpha)
    p.add_argument("--temperature", type=float, default=SearchConfig().distill_temperature)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=str(Path(__file__).parent / "RESULTS_distill.md"))
    args = p.parse_args()
    d = run(QUICK if args.quick else SETTINGS, args.seeds, args.data_dir, args.alpha, args.temperature)
    Path(args.out).with_suffix(".json").write_text(json.dumps(d, indent=1))
    text = markdown(d, " ".join(["python", *sys.argv]))
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
