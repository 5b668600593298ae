"""Part 3's figures of this run (no results.json: the machine's time ran out first), from each
model's metrics.jsonl: last-epoch clean-test accuracy and NLL over the 5 seeds, and each
``_trunk`` model minus its random-start twin, paired seed by seed.

    python docs/gpu-runs/2026-12-04-h200/summarise_part3.py
"""

import json
from pathlib import Path

from jaxcnn.evaluation.convergence import paired, stat, verdict
from jaxcnn.experiments.records import summarise_history

RUNS = Path(__file__).parent / "results" / "part3"
THRESHOLDS = (0.98, 0.99, 0.995)


def history(name: str) -> list[dict]:
    return [json.loads(line) for line in (RUNS / name / "metrics.jsonl").read_text().splitlines() if line.strip()]


def main() -> None:
    names = sorted(p.name for p in RUNS.iterdir() if (p / "metrics.jsonl").is_file())
    for name in names:
        h = history(name)
        s = summarise_history(h, THRESHOLDS)
        accuracy, nll = s["final_test_accuracy"], stat(h[-1]["val_loss"])
        print(f"{name}: {len(h)} epochs, accuracy {accuracy['mean']:.4f} ± {accuracy['ci95']:.4f} "
              f"(ensemble {h[-1]['val_accuracy_ensemble']:.4f}), NLL {nll['mean']:.4f}, "
              f"steps to 98% {s['steps_to_98']['mean']}")
    for name in names:
        twin = name.removesuffix("_trunk")
        if name == twin or twin not in names or len(history(name)) != len(history(twin)):
            continue
        a, b = summarise_history(history(name), THRESHOLDS), summarise_history(history(twin), THRESHOLDS)
        for key, lower in (("final_test_accuracy", False), ("steps_to_98", True)):
            d = paired(a[key], b[key])
            print(f"{name} - {twin}, {key}: {d['mean']} ± {d['ci95']} ({verdict(d, lower)})")
        d = paired(stat(history(name)[-1]["val_loss"]), stat(history(twin)[-1]["val_loss"]))
        print(f"{name} - {twin}, final test NLL: {d['mean']:.4f} ± {d['ci95']:.4f} ({verdict(d, True)})")


if __name__ == "__main__":
    main()
