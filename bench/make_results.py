"""Gather the latest results of every benchmark into bench/RESULTS.md.

    python bench/make_results.py

Each benchmark script writes its own bench/RESULTS_<name>.md (machine, command, date inside);
this file only concatenates them, headings shifted one level down, under a short index.
"""

from pathlib import Path

HERE = Path(__file__).parent
ORDER = [
    ("evidence", "Evidence: adjusted vs uniform vs random widths at equal MACs"),
    ("random_control", "The random control's widths, computed without training"),
    ("gpu", "GPU training speed (CUDA graphs, networks side by side, a whole search)"),
    ("accuracy", "Accuracy at equal FLOPs (uniform, adjusted, pruned; 0.64x)"),
    ("accuracy_long", "Accuracy at equal FLOPs on a longer schedule (uniform vs adjusted)"),
    ("warm", "Warm-start search against cold search"),
    ("warm_gpu", "Warm-start search against cold search on a GPU"),
    ("warm_split", "Warm start: split channels against zero-start channels"),
    ("latency", "Latency: the lookup table, and MACs against latency budgets"),
    ("distill", "Distillation in the final training"),
    ("tracers", "Channel groups of any model: netadjust's tracer and Torch-Pruning's"),
    ("search_cost", "Search cost"),
    ("search_cost_long", "Search cost on the longer schedule"),
    ("fur", "FUR estimation speed and fidelity"),
    ("fur_dist", "FUR estimation with torchrun"),
    ("worker_exit", "Worker exit under torchrun"),
    ("loader", "In-memory loader overhead"),
    ("flops", "FLOPs evaluation speed"),
]


def main() -> None:
    parts = ["# Benchmark results", "",
             "Latest measured results of the scripts in `bench/`; each section says its machine, command and "
             "date. Regenerate this file with `python bench/make_results.py` after running a benchmark.", ""]
    parts += [f"- [{title}](#{title.lower().replace(' ', '-')})" for _, title in ORDER
              if (HERE / f"RESULTS_{_}.md").exists()]
    for name, title in ORDER:
        path = HERE / f"RESULTS_{name}.md"
        if not path.exists():
            continue
        body = path.read_text().splitlines()
        if body and body[0].startswith("# "):
            body = body[1:]
        body = ["#" + line if line.startswith("#") else line for line in body]
        parts += ["", f"## {title}", f"(from `{path.name}`)", *body]
    (HERE / "RESULTS.md").write_text("\n".join(parts).rstrip() + "\n")


if __name__ == "__main__":
    main()
