"""Score a saved model on any data set: the command behind ``python -m jaxcnn evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.document import Table, rate
from jaxcnn.errors import CheckpointError, JaxcnnError
from jaxcnn.evaluation.metrics import classification_report
from jaxcnn.probabilities import softmax, softmax_mean
from jaxcnn.rundir import check_output, run_dir_of
from jaxcnn.training.augment import tta_views
from jaxcnn.training.checkpoint import load_run
from jaxcnn.training.population import each_member, evaluate_population


def predict_probs(state, inputs: dict, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Per-member logits [K, N, C] and the ensemble's probabilities [N, C] for ``inputs``
    (``ArrayDataset.inputs``: the images, and the page geometry for a model that takes it)."""
    labels = np.zeros(len(inputs["image"]), np.int32)
    logits, _ = each_member(evaluate_population, state, jax.device_put(inputs), jax.device_put(labels),
                            batch_size)
    logits = np.asarray(logits)
    return logits, softmax_mean(logits)


def member_probs(state, inputs: dict, batch_size: int, tta: bool = False) -> np.ndarray:
    """Each member's probabilities [K, N, C]; with ``tta``, averaged over the fixed TTA views of the
    images (the page geometry stays as it is)."""
    views = np.asarray(tta_views(inputs["image"])) if tta else inputs["image"][None]
    return np.mean([softmax(predict_probs(state, {**inputs, "image": view}, batch_size)[0])
                    for view in views], 0)


def evaluate_run(path: str | Path, data: ArrayDataset, which: str = "best", *, members: int | None = None,
                 tta: bool = False) -> dict:
    """Every figure for a saved run on ``data``: the ensemble of its seeds, and each seed alone.

    ``members``: ensemble only the first this many seeds; ``tta``: test-time augmentation.
    """
    return evaluate_ensemble([path], data, which, members=members, tta=tta)


def evaluate_ensemble(paths, data: ArrayDataset, which: str = "best", *, members: int | None = None,
                      tta: bool = False) -> dict:
    """``evaluate_run`` for the mean prediction of several saved runs (every kept seed of each), e.g.
    fold models that together have seen every writer; ``members_accuracy`` lists each seed's."""
    probs, seeds, epochs = [], [], []
    for path in paths:
        state, cfg, class_names, epoch = load_run(path, which)
        kept = list(cfg.seeds[:members])
        if tuple(data.class_names) != class_names:
            raise CheckpointError(f"{path}: the checkpoint classifies {len(class_names)} classes "
                                  f"({class_names[0]}..{class_names[-1]}) but the data has {data.num_classes} "
                                  f"({data.class_names[0]}..{data.class_names[-1]})")
        probs.append(member_probs(jax.tree.map(lambda x: x[:len(kept)], state), data.inputs(cfg.model.page_geometry),
                                  cfg.eval_batch_size, tta))
        seeds, epochs = seeds + kept, epochs + [epoch]
    probs = np.concatenate(probs)
    report = classification_report(probs.mean(0), data.labels, data.class_names, data.groups)
    report["members_accuracy"] = [float(np.mean(p.argmax(-1) == data.labels)) for p in probs]
    report["wrong_for_every_member"] = int(np.sum((probs.argmax(-1) != data.labels).all(0)))
    report.update(checkpoint=str(paths[0]) if len(paths) == 1 else [str(p) for p in paths],
                  epoch=epochs[0] if len(paths) == 1 else epochs, seeds=seeds, tta=tta)
    return report


def output_path(ckpt: str | Path, data: str | Path, json_path: str | Path | None = None) -> Path:
    """Where ``evaluate`` writes its JSON (and the PNG beside it), checked before anything is computed.

    Default: ``eval_<data name>.json`` in the run's directory, refused when it holds the scores of
    another data set of the same name. Never a run's own files, never another run's directory,
    never an existing file that is not an evaluation; the folder must be writable.
    """
    run = run_dir_of(ckpt) or Path(ckpt)
    out = Path(json_path) if json_path else run / f"eval_{Path(data).stem}.json"
    for path in (out, out.with_suffix(".png")):
        check_output(path, own_run=run, prefix="eval_", flag="--json")
    if out.exists():
        try:
            earlier = json.loads(out.read_text())
        except (OSError, ValueError):
            earlier = None
        if not isinstance(earlier, dict) or "checkpoint" not in earlier:
            raise JaxcnnError(f"{out}: exists and is not an evaluation; refusing to replace it: choose another --json")
        if earlier.get("data") not in (None, str(Path(data).absolute())):
            raise JaxcnnError(f"{out}: holds the scores on {earlier['data']}, another data set of the same name: "
                              "pass --json PATH to keep both")
    elif out.with_suffix(".png").exists():
        raise JaxcnnError(f"{out.with_suffix('.png')}: exists and is not from an evaluation: choose another --json")
    return ensure_writable(out, "the evaluation", "--json")


def ensure_writable(path: Path, what: str, flag: str) -> Path:
    """``path``, once a probe file written beside it shows that its folder takes files; else a
    one-line JaxcnnError naming ``what`` would be written and the ``flag`` that moves it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.with_name(f".{path.name}.write-test")
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise JaxcnnError(f"{path}: cannot write {what} here ({err.strerror or err}); "
                          f"pass {flag} PATH in a writable folder") from None
    return path


def summary_lines(report: dict, top: int = 8) -> list[str]:
    """What the evaluate command prints."""
    lines = [f"n={report['n']}  accuracy {report['accuracy']:.4f}  case-folded {report['accuracy_casefold']:.4f}  "
             f"top-3 {report['top3_accuracy']:.4f}  ECE {report['ece']:.4f}",
             "members: " + ", ".join(f"{a:.4f}" for a in report["members_accuracy"])]
    if "writer_accuracy_spread" in report:
        w = report["writer_accuracy_spread"]
        worst = sorted(report["per_writer_accuracy"].items(), key=lambda kv: kv[1])[:3]
        lines.append(f"per writer ({w['n']}): mean {w['mean']:.4f}  std {w['std']:.4f}  min {w['min']:.4f}  "
                     f"max {w['max']:.4f}; weakest " + ", ".join(f"{k} {v:.2f}" for k, v in worst))
    worst = sorted(report["per_class_accuracy"].items(), key=lambda kv: kv[1])[:top]
    lines.append("weakest classes: " + ", ".join(f"{k} {v:.2f}" for k, v in worst))
    lines.append("most confused: " + ", ".join(f"{p['true']}->{p['predicted']} x{p['count']}"
                                               for p in report["most_confused"][:top]))
    groups = [g for g in report["confusable_groups"] if g["confused"]][:top]
    lines.append("confusable groups (images taken for another member): " + ", ".join(
        f"{g['group']} {g['confused']}/{g['n']}" for g in groups))
    return lines


WEAKEST_CLASSES = 10


def validation_table(report: dict, seeds, what: str) -> Table:
    """The headline figures of an ``evaluate_run`` report: ensemble, then each seed."""
    rows = [["images", str(report["n"])],
            ["ensemble accuracy", rate(report["accuracy"])],
            ["ensemble accuracy, case-folded", rate(report["accuracy_casefold"])],
            ["ensemble NLL", rate(report["nll"])],
            ["ensemble ECE", rate(report["ece"])]]
    rows += [[f"seed {seed} accuracy", rate(a)] for seed, a in zip(seeds, report["members_accuracy"])]
    epoch = f", checkpoint of epoch {report['epoch']}" if "epoch" in report else ""
    return Table(["metric", "value"], rows, f"Scores on the {what}{epoch}.")


def weakest_classes_table(report: dict) -> Table:
    worst = sorted(report["per_class_accuracy"].items(), key=lambda kv: kv[1])[:WEAKEST_CLASSES]
    rows = [[f"`{name}`", rate(acc), rate(report["per_class_f1"][name])] for name, acc in worst]
    return Table(["class", "accuracy", "F1"], rows, f"The {len(rows)} classes with the lowest accuracy (ensemble).")


def confused_table(report: dict) -> Table:
    rows = [[f"`{p['true']}`", f"`{p['predicted']}`", str(p["count"])] for p in report["most_confused"]]
    return Table(["true", "predicted", "count"], rows, "The most frequent confusions (ensemble).")


def evaluation_files(workdir: Path) -> list[Path]:
    """``eval_*.json`` written by ``python -m jaxcnn evaluate`` beside any run's checkpoint under ``workdir``."""
    return sorted({*workdir.glob("*/eval_*.json"), *workdir.glob("*/checkpoints/eval_*.json")})
