"""Part 1: a 62-class handwritten-character CNN trained from scratch; writer folds judge the recipe.

``run`` trains the final model on every writer: nothing is held out, so its last epoch is kept.
``run_cv`` trains the same recipe once per writer fold and scores each fold's model on the writers
it never saw; the fold mean ± 95% CI is the expected accuracy on new writers. ``run_ablation`` does
that for each variant of the recipe.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
from pathlib import Path

import numpy as np

from jaxcnn.config import ModelConfig, TrainConfig, override, to_dict
from jaxcnn.data.chars74k import CLASS_NAMES, PREPROCESSORS, load_chars74k, writer_folds, writer_split
from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.errors import require
from jaxcnn.evaluation.evaluate import evaluate_ensemble
from jaxcnn.evaluation.metrics import group_confusion, mean_ci95, spread
from jaxcnn.rundir import claim
from jaxcnn.rundir import write_json
from jaxcnn.training.loop import fit

logger = logging.getLogger("jaxcnn")


@dataclasses.dataclass(frozen=True)
class Part1Config:
    """What part 1 trains on and how; ``classes`` empty means all 62.

    ``folds``: writer folds of ``cv`` and ``ablate``. ``cv_dir``: where ``cv`` wrote its results,
    whose estimate the final model's results carry when the recipe matches.
    """

    train: TrainConfig = TrainConfig(seeds=(0, 1, 2))
    classes: tuple[str, ...] = ()
    preprocess: str = "mnist"
    data_subdir: str = "trainPart1"
    folds: int = 5
    cv_dir: str = "ckpts/part1-cv"

    def __post_init__(self):
        require(self, "classes", all(c in CLASS_NAMES for c in self.classes) and len(set(self.classes)) == len(
            self.classes), "distinct Chars74K class names (0-9, A-Z, a-z), or empty for all 62")
        require(self, "folds", self.folds >= 2, "at least 2 (writer folds for cv and ablate)")
        require(self, "preprocess", self.preprocess in PREPROCESSORS, f"one of {', '.join(PREPROCESSORS)}")


def get_config(quick: bool = False) -> Part1Config:
    """The study's configuration; ``quick`` is the same pipeline, tiny and fast (CI, smoke tests)."""
    if not quick:
        return Part1Config()
    return Part1Config(train=TrainConfig(seeds=(0, 1), epochs=2, batch_size=64,
                                         model=ModelConfig(widths=(8, 16, 32), hidden=32)),
                       folds=2)


def load_data(cfg: Part1Config, data_root: Path, cache_dir=None) -> ArrayDataset:
    """Every image of the training writers; ``groups`` are the writers."""
    return load_chars74k(data_root / cfg.data_subdir, classes=list(cfg.classes) or None,
                         cache_dir=cache_dir, preprocess=cfg.preprocess)


def input_meta(cfg: Part1Config) -> dict:
    """Saved with every part-1 checkpoint: ``evaluate`` preprocesses new images the same way."""
    return {"preprocess": cfg.preprocess}


def recipe(config: dict) -> dict:
    """The part of a saved config (``to_dict``) that decides the trained model, not where results go."""
    return {k: v for k, v in config.items() if k != "cv_dir"}


def run(cfg: Part1Config, data_root: Path, workdir: Path, *, resume=False, overwrite=False, cache_dir=None) -> dict:
    """The final model: the recipe trained on every writer, last epoch kept; writes results.json.

    Its expected accuracy on new writers is the cross-validated one of ``cfg.cv_dir``, when that
    run used the same recipe; otherwise None (run ``python -m jaxcnn cv``).
    """
    workdir = claim(workdir, "part1", to_dict(cfg), resume=resume, overwrite=overwrite)
    data = load_data(cfg, data_root, cache_dir)
    writers = sorted(int(w) for w in np.unique(data.groups))
    logger.info("part 1: %d training images of all %d writers, %d classes; no validation writers",
                len(data), len(writers), data.num_classes)
    _, history = fit(data, None, cfg.train, workdir, resume=resume, overwrite=overwrite, meta=input_meta(cfg))
    results = {"config": to_dict(cfg), "writers": writers, "num_train": len(data), "history": history,
               "epoch": len(history), "train_seconds": sum(r["seconds"] for r in history),
               "expected_new_writers": cv_estimate(cfg)}
    write_json(workdir / "results.json", results)
    return results


def cv_estimate(cfg: Part1Config) -> dict | None:
    """The cross-validated figures of ``cfg.cv_dir`` if it ran this recipe, else None."""
    path = Path(cfg.cv_dir) / "results.json"
    saved = json.loads(path.read_text()) if path.is_file() else None
    if saved is None or recipe(saved["config"]) != recipe(to_dict(cfg)):
        logger.info("part 1: no cross-validation of this recipe in %s; run `python -m jaxcnn cv` for the "
                    "expected accuracy on new writers", cfg.cv_dir)
        return None
    cv = saved["cv"]
    return {"source": str(path), **{k: cv[k] for k in ("accuracy", "accuracy_casefold", "top3_accuracy")}}


def train_folds(cfg: Part1Config, data: ArrayDataset, workdir: Path, **flags) -> list[dict]:
    """Trains the recipe once per writer fold in ``workdir/foldN``; each fold's record names its
    validation ``writers``, the ``dirs`` of the runs that score them, ``history`` and ``train_seconds``."""
    folds = []
    for i, val_writers in enumerate(writer_folds(data.groups, cfg.folds)):
        train, val = writer_split(data, val_writers)
        logger.info("fold %d/%d: %d training images, validation writers %s", i + 1, cfg.folds, len(train),
                    list(val_writers))
        fold_dir = workdir / f"fold{i}"
        _, history = fit(train, val, cfg.train, fold_dir, meta=input_meta(cfg), **flags)
        folds.append({"writers": list(val_writers), "dirs": [str(fold_dir)], "history": history,
                      "train_seconds": sum(r["seconds"] for r in history)})
    return folds


def train_fold_ensembles(cfg: Part1Config, data: ArrayDataset, workdir: Path, **flags) -> list[dict]:
    """For each writer fold, models that never saw it but together saw every other writer (nested).

    One model per pair of folds, trained without both (k(k-1)/2 models in ``workdir/withoutI_J``);
    fold i is scored by the k-1 models trained without it: what ensembling the k fold models of
    ``cv`` would give on new writers, against one model trained on every writer (the default).
    """
    folds = writer_folds(data.groups, cfg.folds)
    runs = {}
    for pair in itertools.combinations(range(len(folds)), 2):
        train, _ = writer_split(data, folds[pair[0]] + folds[pair[1]])
        logger.info("fold ensemble: %d training images, without writer folds %d and %d", len(train), *pair)
        run_dir = workdir / f"without{pair[0]}_{pair[1]}"
        _, history = fit(train, None, cfg.train, run_dir, meta=input_meta(cfg), **flags)
        runs[pair] = (str(run_dir), sum(r["seconds"] for r in history))
    return [{"writers": list(writers), "dirs": [d for pair, (d, _) in runs.items() if i in pair], "history": [],
             "train_seconds": sum(t for pair, (_, t) in runs.items() if i in pair) / 2}  # each model serves 2 folds
            for i, writers in enumerate(folds)]


def score_folds(data: ArrayDataset, folds: list[dict], *, members: int | None = None, tta: bool = False) -> dict:
    """Each fold's last-epoch model on its unseen writers, and the mean ± 95% CI over the folds.

    The last epoch, not the best, since the final model has no writer to choose an epoch with;
    ``best_mean_epoch`` says where the folds' mean validation curve peaked. ``confusion`` sums the
    folds': every image scored once, by a model that never saw its writer.
    """
    reports = [evaluate_ensemble(f["dirs"], writer_split(data, f["writers"])[1], "latest", members=members,
                                 tta=tta) for f in folds]
    per_fold = [{"writers": f["writers"], "epoch": r["epoch"], "n": r["n"],
                 **{k: r[k] for k in ("accuracy", "accuracy_casefold", "top3_accuracy", "members_accuracy")},
                 "train_seconds": f["train_seconds"]} for f, r in zip(folds, reports)]
    per_writer = {w: a for r in reports for w, a in r["per_writer_accuracy"].items()}
    confusion = np.sum([r["confusion"] for r in reports], axis=0)
    validated = all(f["history"] for f in folds)  # the nested fold ensembles validate nothing
    curve = np.mean([[e["val_accuracy_ensemble"] for e in f["history"]] for f in folds], axis=0) if validated else None
    return {
        **{k: mean_ci95([p[k] for p in per_fold]) for k in ("accuracy", "accuracy_casefold", "top3_accuracy")},
        "folds": per_fold,
        "per_writer_accuracy": per_writer, "writer_accuracy_spread": spread(per_writer.values()),
        "confusable_groups": group_confusion(confusion, data.class_names),
        "confusion": confusion.tolist(),
        "mean_val_accuracy_by_epoch": None if curve is None else curve.tolist(),
        "best_mean_epoch": None if curve is None else int(curve.argmax()) + 1,
        "members": members, "tta": tta, "train_seconds": sum(p["train_seconds"] for p in per_fold),
    }


def run_cv(cfg: Part1Config, data_root: Path, workdir: Path, *, resume=False, overwrite=False,
           cache_dir=None) -> dict:
    """The recipe under writer folds; writes ``workdir/results.json`` with the estimate under ``cv``."""
    workdir = claim(workdir, "cv", to_dict(cfg), resume=resume, overwrite=overwrite)
    data = load_data(cfg, data_root, cache_dir)
    folds = train_folds(cfg, data, workdir, resume=resume, overwrite=overwrite)
    cv = score_folds(data, folds)
    results = {"config": to_dict(cfg), "cv": {**cv, "scorings": scoring_variants(data, folds, cv, len(cfg.train.seeds))}}
    write_json(workdir / "results.json", results)
    return results


def scoring_variants(data: ArrayDataset, folds: list[dict], cv: dict, seeds: int) -> dict:
    """The recipe's fold models scored other ways, no training: ensembles of the first 1 .. n-1 seeds
    and test-time augmentation; each with its paired per-writer difference to the recipe."""
    options = {f"ensemble_{k}": {"members": k} for k in range(1, seeds)} | {"tta": {"tta": True}}
    rows = {}
    for name, kwargs in options.items():
        scored = score_folds(data, folds, **kwargs)
        rows[name] = {**{k: scored[k] for k in ("accuracy", "accuracy_casefold", "top3_accuracy")},
                      "vs_recipe": paired_difference(scored["per_writer_accuracy"], cv["per_writer_accuracy"])}
    return rows


def cv_lines(cv: dict, what: str = "writer folds") -> list[str]:
    """What ``cv`` prints: the fold means with their 95% CI."""
    figure = lambda s: f"{s['mean']:.4f}" + (f" ± {s['ci95']:.4f}" if s["ci95"] is not None else "")
    w = cv["writer_accuracy_spread"]
    scorings = [f"{name}: accuracy {figure(row['accuracy'])} (vs recipe {figure(row['vs_recipe'])})"
                for name, row in (cv.get("scorings") or {}).items()]
    return [f"{what} ({len(cv['folds'])} folds, last epoch): accuracy {figure(cv['accuracy'])}  "
            f"case-folded {figure(cv['accuracy_casefold'])}  top-3 {figure(cv['top3_accuracy'])}",
            f"per writer: min {w['min']:.4f}  max {w['max']:.4f}  std {w['std']:.4f}",
            "most confused groups: " + ", ".join(f"{g['group']} {g['confused']}/{g['n']}"
                                                 for g in cv["confusable_groups"][:6]), *scorings]


def summary_lines(results: dict) -> list[str]:
    lines = [f"part 1: final model trained on all {len(results['writers'])} writers, "
             f"{results['epoch']} epochs (last kept)"]
    expected = results["expected_new_writers"]
    if expected is None:
        return lines + ["expected accuracy on new writers: not measured (run `python -m jaxcnn cv`)"]
    return lines + [f"expected on new writers (cross-validated, {expected['source']}): accuracy "
                    f"{expected['accuracy']['mean']:.4f} ± {expected['accuracy']['ci95'] or 0:.4f}, "
                    f"case-folded {expected['accuracy_casefold']['mean']:.4f}"]


def paired_difference(accuracy: dict, reference: dict) -> dict:
    """Mean ± 95% CI over writers of ``accuracy - reference`` per writer: a variant against the
    default on the same writers, far less noisy than comparing two fold means."""
    return mean_ci95([accuracy[w] - reference[w] for w in sorted(reference, key=int)])


def ablation_variants(cfg: Part1Config) -> dict[str, tuple[str, ...]]:
    """Each trained variant: the ``--set`` assignments that change one choice of ``cfg``."""
    model, epochs = cfg.train.model, cfg.train.epochs
    return {
        "default": (),
        "plain_resize": ("preprocess=plain",),
        "no_augmentation": ("train.augment.rotate_deg=0", "train.augment.scale=0", "train.augment.shear_deg=0",
                            "train.augment.shift_px=0"),
        "elastic": ("train.augment.elastic_alpha=34",),
        "no_label_smoothing": ("train.label_smoothing=0",),
        "narrow": ("train.model.widths=" + ",".join(str(w // 2) for w in model.widths),
                   f"train.model.hidden={model.hidden // 2}"),
        "wide": ("train.model.widths=" + ",".join(str(w * 3 // 2) for w in model.widths),
                 f"train.model.hidden={model.hidden * 3 // 2}"),
        "half_schedule": (f"train.epochs={max(1, epochs // 2)}",),
        "double_schedule": (f"train.epochs={epochs * 2}",),
        "keep_stroke_width": ("preprocess=keep_stroke_width",),
        "ema": (f"train.ema_decay={1 - 1 / (3 * epochs):.4f}",),
        "mixup": ("train.mixup_alpha=0.2",),
        "cutmix": ("train.cutmix_alpha=1",),
        "fold_ensemble": (),  # the recipe as it is, trained nested: see ``train_fold_ensembles``
    }


def evaluation_variants(cfg: Part1Config) -> dict[str, tuple[str, dict]]:
    """Variants that score a trained variant's fold models another way (no training): ``(base, options)``.

    TTA of the default. (Ensemble size is measured by ``cv`` on the recipe's own seeds.)
    """
    return {"tta": ("default", {"tta": True})}


def ablation_config(cfg: Part1Config) -> Part1Config:
    """The ablation's budget: one seed and a fifth of the epochs of ``cfg`` per fold model, so the
    whole table runs in about two hours on a 2-core CPU (ensemble size is measured by ``cv``)."""
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seeds=cfg.train.seeds[:1],
                                                              epochs=max(1, cfg.train.epochs // 5)))


def run_ablation(cfg: Part1Config, data_root: Path, workdir: Path, variants=None, *,
                 resume=False, overwrite=False, cache_dir=None) -> dict:
    """Every variant under the writer folds, in ``workdir/<variant>``; writes ``workdir/ablation.json``.

    ``variants``: names from ``ablation_variants`` and ``evaluation_variants`` (default: all);
    an evaluation variant trains its base's folds if they are not there yet. ``cfg`` is the
    default variant (see ``ablation_config`` for the command's budget).
    """
    trained, scored = ablation_variants(cfg), evaluation_variants(cfg)
    names = list(variants or [*trained, *scored])
    unknown = [n for n in names if n not in trained and n not in scored]
    if unknown:
        raise ValueError(f"unknown ablation variants {unknown}; choose from {[*trained, *scored]}")
    workdir = claim(workdir, "ablation", to_dict(cfg), resume=resume, overwrite=overwrite)
    flags = {"resume": resume, "overwrite": overwrite}
    table, fold_runs = {}, {}
    for name in names:
        base, options = scored.get(name, (name, {}))
        variant = cfg
        for assignment in trained[base]:
            variant = override(variant, assignment)
        data = load_data(variant, data_root, cache_dir)
        if base not in fold_runs:
            train = train_fold_ensembles if base == "fold_ensemble" else train_folds
            fold_runs[base] = train(variant, data, workdir / base, **flags)
        start = time.perf_counter()
        cv = score_folds(data, fold_runs[base], **options)
        changes = [*trained[base], *(f"evaluate {k}={v}" for k, v in options.items()),
                   *(["ensemble of the k-1 models that never saw the fold (nested)"] if base == "fold_ensemble" else [])]
        table[name] = {"changes": list(changes),
                       **{k: cv[k] for k in ("accuracy", "accuracy_casefold", "top3_accuracy",
                                              "writer_accuracy_spread")},
                       "train_seconds": cv["train_seconds"] if name in trained else 0.0,
                       "eval_seconds": time.perf_counter() - start,
                       "folds": len(cv["folds"]), "epochs": variant.train.epochs,
                       "seeds": len(variant.train.seeds[:cv["members"]]), "tta": cv["tta"],
                       "per_writer_accuracy": cv["per_writer_accuracy"]}
        if "default" in table:
            table[name]["vs_default"] = paired_difference(cv["per_writer_accuracy"],
                                                          table["default"]["per_writer_accuracy"])
        write_json(workdir / "ablation.json", {"config": to_dict(cfg), "variants": table})
        logger.info("ablation %s: accuracy %.4f case-folded %.4f", name, cv["accuracy"]["mean"],
                    cv["accuracy_casefold"]["mean"])
    return {"config": to_dict(cfg), "variants": table}
