"""Part 1's recipe judged by folds: ``run_cv`` trains it once per fold and scores each fold's model
on the images it never saw (the fold mean ± 95% CI is the expected accuracy); ``run_ablation`` does
that for each variant of the recipe. Folds are class-stratified image folds by default, mirroring
the task's held-back test (a writer's other characters are in training), or writer folds
(``folds_by="writer"``: writers never seen at all). Their results, and what the report reads of
them (``estimate``); the sections are ``report``'s."""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path

import numpy as np

from jaxcnn.config import defaults_of, override, to_dict
from jaxcnn.data.chars74k import fold_indices
from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.evaluation.evaluate import evaluate_ensemble
from jaxcnn.evaluation.metrics import group_confusion, mean_ci95, spread
from jaxcnn.experiments.part1.config import Part1Config, input_meta, load_data
from jaxcnn.experiments.results import ABLATION_FILE, RESULTS_FILE, Stamped, write_results
from jaxcnn.rundir import claim
from jaxcnn.training.loop import fit

logger = logging.getLogger("jaxcnn")


class CvResults(Stamped):
    """``run_cv``'s results.json: ``cv`` is ``score_folds``'s figures and ``scorings``."""

    config: dict
    cv: dict


class AblationResults(Stamped):
    """``run_ablation``'s ablation.json: one row per variant (its changes, fold figures, paired differences)."""

    config: dict
    variants: dict[str, dict]


def folds_protocol(config: dict) -> str:
    """Which folds a saved cv or ablation config used ("writer" before class folds existed)."""
    return config.get("folds_by", "writer")


def held_out_name(data: ArrayDataset, index: np.ndarray, by: str) -> str:
    """What a fold holds out, in words: its writers, or its images per class."""
    if by == "writer":
        writers = np.unique(data.groups[index])
        return f"writers {writers[0]}-{writers[-1]}" if len(writers) > 1 else f"writer {writers[0]}"
    return f"{len(index)} images ({len(index) / data.num_classes:.0f} per class)"


def train_folds(cfg: Part1Config, data: ArrayDataset, workdir: Path, first: int | None = None, **flags) -> list[dict]:
    """Trains the recipe once per fold (the ``first`` folds only, for a screen) in ``workdir/foldN``;
    each fold's record names its held-out images (``val_index``, ``held_out``), the ``dirs`` of the
    runs that score them, ``history`` and ``train_seconds``."""
    folds = []
    for i, index in enumerate(fold_indices(data, cfg.folds, cfg.folds_by)[:first]):
        held_out = np.zeros(len(data), bool)
        held_out[index] = True
        name = held_out_name(data, index, cfg.folds_by)
        logger.info("fold %d/%d: %d training images, held out %s", i + 1, cfg.folds, len(data) - len(index), name)
        fold_dir = workdir / f"fold{i}"
        _, history = fit(data.subset(~held_out), data.subset(held_out), cfg.train, fold_dir, meta=input_meta(cfg),
                         **flags)
        folds.append({"held_out": name, "val_index": index.tolist(), "dirs": [str(fold_dir)], "history": history,
                      "train_seconds": sum(r["seconds"] for r in history)})
    return folds


def train_fold_ensembles(cfg: Part1Config, data: ArrayDataset, workdir: Path, **flags) -> list[dict]:
    """For each fold, models that never saw it but together saw every other image (nested).

    One model per pair of folds, trained without both (k(k-1)/2 models in ``workdir/withoutI_J``);
    fold i is scored by the k-1 models trained without it: what ensembling the k fold models of
    ``cv`` would give on unseen images, against one model trained on every image (the default).
    """
    folds = fold_indices(data, cfg.folds, cfg.folds_by)
    runs = {}
    for pair in itertools.combinations(range(len(folds)), 2):
        kept = np.ones(len(data), bool)
        kept[np.concatenate([folds[pair[0]], folds[pair[1]]])] = False
        logger.info("fold ensemble: %d training images, without folds %d and %d", kept.sum(), *pair)
        run_dir = workdir / f"without{pair[0]}_{pair[1]}"
        _, history = fit(data.subset(kept), None, cfg.train, run_dir, meta=input_meta(cfg), **flags)
        runs[pair] = (str(run_dir), sum(r["seconds"] for r in history))
    return [{"held_out": held_out_name(data, index, cfg.folds_by), "val_index": index.tolist(),
             "dirs": [d for pair, (d, _) in runs.items() if i in pair], "history": [],
             "train_seconds": sum(t for pair, (_, t) in runs.items() if i in pair) / 2}  # each model serves 2 folds
            for i, index in enumerate(folds)]


def score_folds(data: ArrayDataset, folds: list[dict], *, members: int | None = None, tta: bool = False) -> dict:
    """Each fold's last-epoch model on its held-out images, and the mean ± 95% CI over the folds.

    The last epoch, not the best, since the final model has nothing held out to choose an epoch
    with; ``best_mean_epoch`` says where the folds' mean validation curve peaked. ``confusion`` and
    the per-writer figures pool the folds': every image scored once, by a model that never saw it.
    """
    reports = [evaluate_ensemble(f["dirs"], data.subset(np.array(f["val_index"])), "latest", members=members,
                                 tta=tta) for f in folds]
    per_fold = [{"held_out": f["held_out"], "epoch": r["epoch"], "n": r["n"],
                 **{k: r[k] for k in ("accuracy", "accuracy_casefold", "top3_accuracy", "members_accuracy")},
                 "train_seconds": f["train_seconds"]} for f, r in zip(folds, reports)]
    correct = {w: [0, 0] for r in reports for w in r["per_writer_accuracy"]}
    for f, r in zip(folds, reports):  # a writer's images may sit in several folds: pool them by count
        groups = data.groups[np.array(f["val_index"])]
        for w, accuracy in r["per_writer_accuracy"].items():
            n = int(np.sum(groups == int(w)))
            correct[w][0] += accuracy * n
            correct[w][1] += n
    per_writer = {w: hits / n for w, (hits, n) in correct.items()}
    unanimous = sum(r["wrong_for_every_member"] for r in reports)
    confusion = np.sum([r["confusion"] for r in reports], axis=0)
    validated = all(f["history"] for f in folds)  # the nested fold ensembles validate nothing
    curve = np.mean([[e["val_accuracy_ensemble"] for e in f["history"]] for f in folds], axis=0) if validated else None
    return {
        **{k: mean_ci95([p[k] for p in per_fold]) for k in ("accuracy", "accuracy_casefold", "top3_accuracy")},
        "folds": per_fold,
        "per_writer_accuracy": per_writer, "writer_accuracy_spread": spread(per_writer.values()),
        "confusable_groups": group_confusion(confusion, data.class_names),
        "case_pairs": case_pair_resolution(confusion, data.class_names, geometry_alone(data, folds)),
        "confusion": confusion.tolist(),
        "wrong_for_every_member": {"n": unanimous, "share": unanimous / sum(r["n"] for r in reports),
                                   "members": len(reports[0]["members_accuracy"])},
        "mean_val_accuracy_by_epoch": None if curve is None else curve.tolist(),
        "best_mean_epoch": None if curve is None else int(curve.argmax()) + 1,
        "members": members, "tta": tta, "train_seconds": sum(p["train_seconds"] for p in per_fold),
    }


CASE_PAIRS = ("Cc", "Kk", "Mm", "Oo", "Pp", "Ss", "Uu", "Vv", "Ww", "Xx", "Yy", "Zz")


def case_pair_resolution(confusion: np.ndarray, class_names, by_geometry: dict | None = None) -> dict:
    """For each case pair whose letters look alike but for their size (``CASE_PAIRS``), the share of
    its images not taken for the other case: what the page's size cue is there to fix; beside it
    the share ``geometry_alone`` gets right, where given."""
    index = {name: i for i, name in enumerate(class_names)}
    rows = {}
    for pair in CASE_PAIRS:
        if all(c in index for c in pair):
            upper, lower = index[pair[0]], index[pair[1]]
            n = int(confusion[upper].sum() + confusion[lower].sum())
            crossed = int(confusion[upper, lower] + confusion[lower, upper])
            rows[pair] = {"n": n, "crossed": crossed, "resolved": 1 - crossed / n if n else None,
                          **({"resolved_by_geometry_alone": by_geometry.get(pair)} if by_geometry is not None else {})}
    return rows


def geometry_alone(data: ArrayDataset, folds: list[dict]) -> dict[str, float]:
    """For each case pair, the share of its held-out images that a linear discriminant on the page
    geometry alone (Fisher 1936: two Gaussians with one covariance), fitted on the same folds'
    training images of the pair, gives the right case: what the page's cue is worth by itself,
    beside the network that also sees the shape. Empty without geometry."""
    if data.geometry is None:
        return {}
    index = {name: i for i, name in enumerate(data.class_names)}
    features, labels = data.geometry.astype(np.float64), data.labels
    held_out = [np.isin(np.arange(len(data)), f["val_index"]) for f in folds]
    resolved = {}
    for pair in (p for p in CASE_PAIRS if all(c in index for c in p)):
        upper, lower = index[pair[0]], index[pair[1]]
        right = total = 0
        for test in held_out:
            a, b = features[~test & (labels == upper)], features[~test & (labels == lower)]
            if len(a) < 2 or len(b) < 2:
                continue
            covariance = np.cov(np.vstack([a - a.mean(0), b - b.mean(0)]).T) + 1e-6 * np.eye(features.shape[1])
            direction = np.linalg.solve(covariance, a.mean(0) - b.mean(0))
            threshold = direction @ (a.mean(0) + b.mean(0)) / 2
            for label, is_upper in ((upper, True), (lower, False)):
                scores = features[test & (labels == label)] @ direction - threshold
                right += int(np.sum((scores > 0) == is_upper))
                total += len(scores)
        if total:
            resolved[pair] = right / total
    return resolved


def run_cv(cfg: Part1Config, data_root: Path, workdir: Path, *, resume=False, overwrite=False,
           cache_dir=None) -> dict:
    """The recipe under ``cfg.folds_by`` folds; writes ``workdir/results.json``, the estimate under ``cv``."""
    workdir = claim(workdir, "cv", to_dict(cfg), defaults=defaults_of(cfg), resume=resume,
                    overwrite=overwrite)
    data = load_data(cfg, data_root, cache_dir)
    folds = train_folds(cfg, data, workdir, resume=resume, overwrite=overwrite)
    cv = score_folds(data, folds)
    results = CvResults(config=to_dict(cfg), cv={**cv, "scorings": scoring_variants(data, folds, cv, len(cfg.train.seeds))})
    return write_results(workdir / RESULTS_FILE, results)


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


def paired_difference(accuracy: dict, reference: dict) -> dict:
    """Mean ± 95% CI over writers of ``accuracy - reference`` per writer: a variant against the
    default on the same writers, far less noisy than comparing two fold means."""
    return mean_ci95([accuracy[w] - reference[w] for w in sorted(reference, key=int)])


CROP_SIZES = (28, 32, 48, 64)  # the crop sides the ablation tries (pixels)


def ablation_variants(cfg: Part1Config) -> dict[str, tuple[str, ...]]:
    """Each trained variant: the ``--set`` assignments that change one choice of ``cfg``."""
    model, epochs = cfg.train.model, cfg.train.epochs
    no_augmentation = ("train.augment.rotate_deg=0", "train.augment.scale=0", "train.augment.shear_deg=0",
                       "train.augment.shift_px=0")
    return {
        "default": (),
        "plain_baseline": ("preprocess=stretch", "train.model.page_geometry=false", "train.label_smoothing=0",
                           "train.batch_size=64", "train.learning_rate=0.003", "train.epochs=40",
                           "train.warmup_epochs=12", *no_augmentation),
        "stretch": ("preprocess=stretch",),
        "no_augmentation": no_augmentation,
        "elastic": ("train.augment.elastic_alpha=34",),
        "no_label_smoothing": ("train.label_smoothing=0",),
        "narrow": ("train.model.widths=" + ",".join(str(w // 2) for w in model.widths),
                   f"train.model.hidden={model.hidden // 2}"),
        "wide": ("train.model.widths=" + ",".join(str(w * 3 // 2) for w in model.widths),
                 f"train.model.hidden={model.hidden * 3 // 2}"),
        "half_batch": (f"train.batch_size={max(1, cfg.train.batch_size // 2)}",),
        "half_schedule": (f"train.epochs={max(1, epochs // 2)}",),
        "double_schedule": (f"train.epochs={epochs * 2}",),
        "keep_stroke_width": ("preprocess=keep_stroke_width",),
        "no_page_geometry": ("train.model.page_geometry=false",),
        "geometry_skip": ("train.model.geometry_skip=true",),
        "ema": (f"train.ema_decay={1 - 1 / (3 * epochs):.4f}",),
        "mixup": ("train.mixup_alpha=0.2",),
        "cutmix": ("train.cutmix_alpha=1",),
        "fold_ensemble": (),  # the recipe as it is, trained nested: see ``train_fold_ensembles``
        **{f"crop{size}": (f"train.model.image_size={size}",) for size in CROP_SIZES if size != model.image_size},
        "resnet": ("train.model.trunk=resnet",),
        **{f"resnet_crop{size}": ("train.model.trunk=resnet", f"train.model.image_size={size}")
           for size in CROP_SIZES if size != model.image_size},
    }


def evaluation_variants(cfg: Part1Config) -> dict[str, tuple[str, dict]]:
    """Variants that score a trained variant's fold models another way (no training): ``(base, options)``.

    TTA of the default. (Ensemble size is measured by ``cv`` on the recipe's own seeds.)
    """
    return {"tta": ("default", {"tta": True})}


def run_ablation(cfg: Part1Config, data_root: Path, workdir: Path, variants=None, *,
                 resume=False, overwrite=False, cache_dir=None, first_folds: int | None = None) -> dict:
    """Every variant under ``cfg``'s folds, in ``workdir/<variant>``; writes ``workdir/ablation.json``.

    ``variants``: names from ``ablation_variants`` and ``evaluation_variants`` (default: all);
    an evaluation variant trains its base's folds if they are not there yet. ``cfg`` is the
    default variant, trained at its full schedule and seeds: a row decides with the power of ``cv``.
    ``first_folds``: a screen, every row on the first folds only (a resumed run may extend them).
    """
    if first_folds is not None and not 1 <= first_folds <= cfg.folds:
        raise ValueError(f"--first-folds must be in 1..{cfg.folds} (the folds), got {first_folds}")
    trained, scored = ablation_variants(cfg), evaluation_variants(cfg)
    names = list(variants or [*trained, *scored])
    unknown = [n for n in names if n not in trained and n not in scored]
    if unknown:
        raise ValueError(f"unknown ablation variants {unknown}; choose from {[*trained, *scored]}")
    workdir = claim(workdir, "ablation", to_dict(cfg), defaults=defaults_of(cfg), resume=resume,
                    overwrite=overwrite)
    flags = {"resume": resume, "overwrite": overwrite}
    table, fold_runs = {}, {}
    written = AblationResults(config=to_dict(cfg), variants=table)
    for name in names:
        base, options = scored.get(name, (name, {}))
        variant = cfg
        for assignment in trained[base]:
            variant = override(variant, assignment)
        data = load_data(variant, data_root, cache_dir)
        if base not in fold_runs:
            if base == "fold_ensemble":
                fold_runs[base] = train_fold_ensembles(variant, data, workdir / base, **flags)
            else:
                fold_runs[base] = train_folds(variant, data, workdir / base, first_folds, **flags)
        start = time.perf_counter()
        cv = score_folds(data, fold_runs[base], **options)
        changes = [*trained[base], *(f"evaluate {k}={v}" for k, v in options.items()),
                   *(["ensemble of the k-1 models that never saw the fold (nested)"] if base == "fold_ensemble" else [])]
        table[name] = {"changes": list(changes),
                       **{k: cv[k] for k in ("accuracy", "accuracy_casefold", "top3_accuracy",
                                              "writer_accuracy_spread", "case_pairs")},
                       "train_seconds": cv["train_seconds"] if name in trained else 0.0,
                       "eval_seconds": time.perf_counter() - start,
                       "folds": len(cv["folds"]), "epochs": variant.train.epochs,
                       "seeds": len(variant.train.seeds[:cv["members"]]), "tta": cv["tta"],
                       "per_writer_accuracy": cv["per_writer_accuracy"],
                       "fold_accuracy": [f["accuracy"] for f in cv["folds"]]}
        if "default" in table:
            default = table["default"]
            table[name]["vs_default"] = paired_difference(cv["per_writer_accuracy"], default["per_writer_accuracy"])
            table[name]["vs_default_per_fold"] = mean_ci95(
                [a - b for a, b in zip(table[name]["fold_accuracy"], default["fold_accuracy"])])
        written = write_results(workdir / ABLATION_FILE, AblationResults(config=to_dict(cfg), variants=table))
        logger.info("ablation %s: accuracy %.4f case-folded %.4f", name, cv["accuracy"]["mean"],
                    cv["accuracy_casefold"]["mean"])
    return written


def estimate(cv_results: dict, source: str) -> dict:
    """A cv run's expected accuracy (fold mean ± 95% CI, case-sensitive, case-folded and top-3), its
    protocol and how many folds, read from its results (``CvResults``) at ``source``."""
    cv = cv_results["cv"]
    return {"source": source, "folds_by": folds_protocol(cv_results["config"]), "folds": len(cv["folds"]),
            **{k: cv[k] for k in ("accuracy", "accuracy_casefold", "top3_accuracy")}}
