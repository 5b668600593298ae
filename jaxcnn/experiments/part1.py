"""Part 1: a 62-class handwritten-character CNN trained from scratch; folds judge the recipe.

``run`` trains the final model on every image: nothing is held out, so its last epoch is kept.
``run_cv`` trains the same recipe once per fold and scores each fold's model on the images it never
saw; the fold mean ± 95% CI is the expected accuracy. Folds are class-stratified image folds by
default, mirroring the task's held-back test (a writer's other characters are in training), or
writer folds (``folds_by="writer"``: writers never seen at all). ``run_ablation`` does that for
each variant of the recipe.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
from pathlib import Path

import numpy as np

from jaxcnn.config import ModelConfig, TrainConfig, defaults_of, override, to_dict
from jaxcnn.data.chars74k import CLASS_NAMES, FOLD_PROTOCOLS, PREPROCESSORS, fold_indices, load_chars74k
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

    ``folds``: the folds of ``cv`` and ``ablate``, ``folds_by`` "class" (class-stratified images, as
    the task's test) or "writer".
    """

    train: TrainConfig = TrainConfig(seeds=(0, 1, 2), model=ModelConfig(page_geometry=True))
    classes: tuple[str, ...] = ()
    preprocess: str = "mnist"
    data_subdir: str = "trainPart1"
    folds: int = 5
    folds_by: str = "class"

    def __post_init__(self):
        require(self, "classes", all(c in CLASS_NAMES for c in self.classes) and len(set(self.classes)) == len(
            self.classes), "distinct Chars74K class names (0-9, A-Z, a-z), or empty for all 62")
        require(self, "folds", self.folds >= 2, "at least 2 (the folds of cv and ablate)")
        require(self, "folds_by", self.folds_by in FOLD_PROTOCOLS, f"one of {', '.join(FOLD_PROTOCOLS)}")
        require(self, "preprocess", self.preprocess in PREPROCESSORS, f"one of {', '.join(PREPROCESSORS)}")


def get_config(quick: bool = False) -> Part1Config:
    """The study's configuration; ``quick`` is the same pipeline, tiny and fast (CI, smoke tests)."""
    if not quick:
        return Part1Config()
    return Part1Config(train=TrainConfig(seeds=(0, 1), epochs=2, batch_size=64,
                                         model=ModelConfig(widths=(8, 16, 32), hidden=32, page_geometry=True)),
                       folds=2)


def load_data(cfg: Part1Config, data_root: Path, cache_dir=None) -> ArrayDataset:
    """Every image of the training writers; ``groups`` are the writers."""
    return load_chars74k(data_root / cfg.data_subdir, classes=list(cfg.classes) or None,
                         cache_dir=cache_dir, preprocess=cfg.preprocess)


def input_meta(cfg: Part1Config) -> dict:
    """Saved with every part-1 checkpoint: ``evaluate`` preprocesses new images the same way."""
    return {"preprocess": cfg.preprocess}


def run(cfg: Part1Config, data_root: Path, workdir: Path, *, cv_run: Path | None = None, resume=False,
        overwrite=False, cache_dir=None) -> dict:
    """The final model: the recipe trained on every writer, last epoch kept; writes results.json.

    Its expected accuracy on new writers is the cross-validated one of ``cv_run``, when that run
    used the same recipe; otherwise None (run ``python -m jaxcnn cv``).
    """
    workdir = claim(workdir, "part1", to_dict(cfg), defaults=defaults_of(cfg), resume=resume,
                    overwrite=overwrite)
    data = load_data(cfg, data_root, cache_dir)
    writers = sorted(int(w) for w in np.unique(data.groups))
    logger.info("part 1: %d training images of %d writers, %d classes; none held out",
                len(data), len(writers), data.num_classes)
    _, history = fit(data, None, cfg.train, workdir, resume=resume, overwrite=overwrite, meta=input_meta(cfg))
    results = {"config": to_dict(cfg), "writers": writers, "num_train": len(data), "history": history,
               "epoch": len(history), "train_seconds": sum(r["seconds"] for r in history),
               "expected_new_writers": cv_estimate(cfg, cv_run)}
    write_json(workdir / "results.json", results)
    return results


def cv_estimate(cfg: Part1Config, cv_run: Path | None) -> dict | None:
    """The cross-validated figures of ``cv_run`` if it ran this recipe, else None."""
    path = Path(cv_run or "") / "results.json"
    saved = json.loads(path.read_text()) if cv_run and path.is_file() else None
    if saved is None or saved["config"] != to_dict(cfg):
        logger.info("part 1: no cross-validation of this recipe in %s; run `python -m jaxcnn cv` for the "
                    "expected accuracy on unseen images", cv_run)
        return None
    cv = saved["cv"]
    return {"source": str(path), "folds_by": folds_protocol(saved["config"]),
            **{k: cv[k] for k in ("accuracy", "accuracy_casefold", "top3_accuracy")}}


PROTOCOLS = {"class": "class-stratified folds, as the task's test", "writer": "writer folds"}


def folds_protocol(config: dict) -> str:
    """Which folds a saved cv or ablation config used ("writer" before class folds existed)."""
    return config.get("folds_by", "writer")


def held_out_name(data: ArrayDataset, index: np.ndarray, by: str) -> str:
    """What a fold holds out, in words: its writers, or its images per class."""
    if by == "writer":
        writers = np.unique(data.groups[index])
        return f"writers {writers[0]}-{writers[-1]}" if len(writers) > 1 else f"writer {writers[0]}"
    return f"{len(index)} images ({len(index) / data.num_classes:.0f} per class)"


def train_folds(cfg: Part1Config, data: ArrayDataset, workdir: Path, **flags) -> list[dict]:
    """Trains the recipe once per fold in ``workdir/foldN``; each fold's record names its held-out
    images (``val_index``, ``held_out``), the ``dirs`` of the runs that score them, ``history``
    and ``train_seconds``."""
    folds = []
    for i, index in enumerate(fold_indices(data, cfg.folds, cfg.folds_by)):
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


def cv_lines(cv: dict, what: str = "folds") -> list[str]:
    """What ``cv`` prints: the fold means with their 95% CI."""
    figure = lambda s: f"{s['mean']:.4f}" + (f" ± {s['ci95']:.4f}" if s["ci95"] is not None else "")
    w = cv["writer_accuracy_spread"]
    scorings = [f"{name}: accuracy {figure(row['accuracy'])} (vs recipe {figure(row['vs_recipe'])})"
                for name, row in (cv.get("scorings") or {}).items()]
    return [f"{what} ({len(cv['folds'])} folds, last epoch): accuracy {figure(cv['accuracy'])}  "
            f"case-folded {figure(cv['accuracy_casefold'])}  top-3 {figure(cv['top3_accuracy'])}",
            f"per writer: min {w['min']:.4f}  max {w['max']:.4f}  std {w['std']:.4f}",
            "most confused groups: " + ", ".join(f"{g['group']} {g['confused']}/{g['n']}"
                                                 for g in cv["confusable_groups"][:6]),
            "case pairs resolved: " + ", ".join(f"{pair} {row['resolved']:.2f}" for pair, row in
                                                cv.get("case_pairs", {}).items() if row["resolved"] is not None),
            *unanimous_lines(cv),
            *scorings]


def unanimous_lines(cv: dict) -> list[str]:
    """How many held-out images every member got wrong: the errors more seeds cannot vote away."""
    wrong = cv.get("wrong_for_every_member")
    if wrong is None or wrong["members"] < 2:
        return []
    return [f"wrong for all {wrong['members']} members: {wrong['n']} images ({wrong['share']:.4f}); "
            f"right for at least one: {1 - wrong['share']:.4f}"]


def summary_lines(results: dict) -> list[str]:
    lines = [f"part 1: final model trained on all {results['num_train']} images ({len(results['writers'])} writers), "
             f"{results['epoch']} epochs (last kept)"]
    expected = results["expected_new_writers"]
    if expected is None:
        return lines + ["expected accuracy: not measured (run `python -m jaxcnn cv`)"]
    return lines + [f"expected ({expected.get('folds_by', 'writer')} folds, {expected['source']}): accuracy "
                    f"{expected['accuracy']['mean']:.4f} ± {expected['accuracy']['ci95'] or 0:.4f}, "
                    f"case-folded {expected['accuracy_casefold']['mean']:.4f}"]


def paired_difference(accuracy: dict, reference: dict) -> dict:
    """Mean ± 95% CI over writers of ``accuracy - reference`` per writer: a variant against the
    default on the same writers, far less noisy than comparing two fold means."""
    return mean_ci95([accuracy[w] - reference[w] for w in sorted(reference, key=int)])


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
    }


def evaluation_variants(cfg: Part1Config) -> dict[str, tuple[str, dict]]:
    """Variants that score a trained variant's fold models another way (no training): ``(base, options)``.

    TTA of the default. (Ensemble size is measured by ``cv`` on the recipe's own seeds.)
    """
    return {"tta": ("default", {"tta": True})}


def run_ablation(cfg: Part1Config, data_root: Path, workdir: Path, variants=None, *,
                 resume=False, overwrite=False, cache_dir=None) -> dict:
    """Every variant under the writer folds, in ``workdir/<variant>``; writes ``workdir/ablation.json``.

    ``variants``: names from ``ablation_variants`` and ``evaluation_variants`` (default: all);
    an evaluation variant trains its base's folds if they are not there yet. ``cfg`` is the
    default variant, trained at its full schedule and seeds: a row decides with the power of ``cv``.
    """
    trained, scored = ablation_variants(cfg), evaluation_variants(cfg)
    names = list(variants or [*trained, *scored])
    unknown = [n for n in names if n not in trained and n not in scored]
    if unknown:
        raise ValueError(f"unknown ablation variants {unknown}; choose from {[*trained, *scored]}")
    workdir = claim(workdir, "ablation", to_dict(cfg), defaults=defaults_of(cfg), resume=resume,
                    overwrite=overwrite)
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
        write_json(workdir / "ablation.json", {"config": to_dict(cfg), "variants": table})
        logger.info("ablation %s: accuracy %.4f case-folded %.4f", name, cv["accuracy"]["mean"],
                    cv["accuracy_casefold"]["mean"])
    return {"config": to_dict(cfg), "variants": table}
