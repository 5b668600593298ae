"""Experiment configuration as frozen dataclasses: plain data, saved with every run.

Every field can be overridden from the command line with ``--set path.to.field=value``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing

from jaxcnn.errors import require

DTYPES = ("float32", "bfloat16", "float16", "float64")  # float64: parameters too (needs jax_enable_x64)
LOSSES = ("cross_entropy", "forward", "gce", "complementary_nn")
TRUNKS = ("vgg", "resnet")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random distortions; all zero means no augmentation. Lengths (``shift_px``, the
    elastic field's) are pixels of a 28-px image, scaled with the image's size."""

    rotate_deg: float = 12.0
    scale: float = 0.12
    shear_deg: float = 12.0
    shift_px: float = 2.5
    elastic_alpha: float = 0.0
    elastic_sigma: float = 4.0

    def __post_init__(self):
        require(self, "rotate_deg", 0 <= self.rotate_deg <= 180, "in [0, 180]")
        require(self, "scale", 0 <= self.scale < 1, "in [0, 1)")
        require(self, "shear_deg", 0 <= self.shear_deg < 90, "in [0, 90)")
        for name in ("shift_px", "elastic_alpha"):
            require(self, name, 0 <= getattr(self, name) < math.inf, ">= 0 and finite")
        require(self, "elastic_sigma", 0 < self.elastic_sigma < math.inf, "> 0 and finite")

    @property
    def enabled(self) -> bool:
        return any((self.rotate_deg, self.scale, self.shear_deg, self.shift_px, self.elastic_alpha))


NO_AUGMENT = AugmentConfig(0.0, 0.0, 0.0, 0.0, 0.0)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The CNN of ``jaxcnn.model``: its trunk (``widths`` per block of VGG convolutions, or per stage of
    ``blocks`` residual blocks) and head, for square images of ``image_size`` pixels (part 1's crop
    size: its preprocessing reads it from here, so the two cannot disagree)."""

    trunk: str = "vgg"
    widths: tuple[int, ...] = (32, 64, 128)
    blocks: int = 2  # residual blocks per stage (trunk "resnet")
    image_size: int = 28
    hidden: int = 256
    dropout: float = 0.5
    dtype: str = "float32"
    page_geometry: bool = False  # the head also sees where the character sat on its page (part 1)
    geometry_skip: bool = False  # with page_geometry: also a linear path from the geometry to the logits

    def __post_init__(self):
        require(self, "widths", len(self.widths) > 0 and all(w >= 1 for w in self.widths),
                "a non-empty list of channel counts >= 1")
        require(self, "trunk", self.trunk in TRUNKS, f"one of {', '.join(TRUNKS)}")
        require(self, "blocks", self.blocks >= 1, ">= 1")
        require(self, "image_size", 16 <= self.image_size <= 128 and (
            self.trunk != "vgg" or self.image_size >= 2 ** len(self.widths)), "in 16..128 pixels (and, for the "
                "VGG trunk, at least 2 ** len(widths): each block halves it)")
        require(self, "hidden", self.hidden >= 1, ">= 1")
        require(self, "dropout", 0 <= self.dropout < 1, "in [0, 1)")
        require(self, "dtype", self.dtype in DTYPES, f"one of {', '.join(DTYPES)}")
        require(self, "geometry_skip", self.page_geometry or not self.geometry_skip, "false without page_geometry")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run (or several seeds side by side): optimiser, schedule, loss, augmentation."""

    seeds: tuple[int, ...] = (0,)
    epochs: int = 60
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 5e-4
    warmup_epochs: int = 2
    label_smoothing: float = 0.1
    eval_batch_size: int = 1000
    probe_every: int = 0  # also validate every this many steps during the first epoch (0: epoch ends only)
    freeze_trunk: bool = False
    train_trunk_batch_norm: bool = False  # with freeze_trunk: the trunk's BatchNorm still learns (AdaBN and more)
    trunk_lr_scale: float = 1.0  # the trunk's learning rate, a multiple of the rest's (e.g. 0.1 for a grafted trunk)
    decay_to_start: float = 0.0  # > 0: decoupled decay of the trunk's kernels toward their first weights (L2-SP)
    loss: str = "cross_entropy"  # or "forward" (needs label_transition), "gce" or "complementary_nn"
    label_transition: tuple[tuple[float, ...], ...] = ()  # T[i][j] = P(observed j | true i)
    gce_q: float = 0.7
    ema_decay: float = 0.0  # > 0: validate and keep an exponential moving average of the weights
    mixup_alpha: float = 0.0  # > 0: mixup with Beta(alpha, alpha) mixing weights (Zhang et al. 2018)
    cutmix_alpha: float = 0.0  # > 0: CutMix with Beta(alpha, alpha) box areas (Yun et al. 2019)
    devices: int = 0  # split each batch over this many devices (data parallelism); 0: all there are
    checkpoint_every: float = 60.0  # seconds between checkpoints (0: every epoch); the last epoch always saves
    model: ModelConfig = ModelConfig()
    augment: AugmentConfig = AugmentConfig()

    def __post_init__(self):
        require(self, "seeds", len(self.seeds) > 0 and len(set(self.seeds)) == len(self.seeds)
                and all(s >= 0 for s in self.seeds), "a non-empty list of distinct integers >= 0")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            require(self, name, getattr(self, name) >= 1, ">= 1")
        require(self, "learning_rate", math.isfinite(self.learning_rate) and self.learning_rate > 0, "> 0")
        require(self, "weight_decay", math.isfinite(self.weight_decay) and self.weight_decay >= 0, ">= 0")
        require(self, "warmup_epochs", self.warmup_epochs >= 0, ">= 0")
        require(self, "train_trunk_batch_norm", self.freeze_trunk or not self.train_trunk_batch_norm,
                "false unless freeze_trunk (a trunk that trains trains its BatchNorm too)")
        require(self, "trunk_lr_scale", math.isfinite(self.trunk_lr_scale) and self.trunk_lr_scale > 0, "> 0")
        require(self, "decay_to_start", math.isfinite(self.decay_to_start) and self.decay_to_start >= 0, ">= 0 (0: off)")
        require(self, "label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)")
        require(self, "probe_every", self.probe_every >= 0, ">= 0 (0: no probes)")
        require(self, "loss", self.loss in LOSSES, f"one of {', '.join(LOSSES)}")
        require(self, "gce_q", 0 < self.gce_q <= 1, "in (0, 1]")
        require(self, "devices", self.devices >= 0, ">= 0 (0: every device)")
        require(self, "checkpoint_every", 0 <= self.checkpoint_every < math.inf, ">= 0 seconds (0: every epoch)")
        require(self, "ema_decay", 0 <= self.ema_decay < 1, "in [0, 1) (0: no weight averaging)")
        for name in ("mixup_alpha", "cutmix_alpha"):
            require(self, name, math.isfinite(getattr(self, name)) and getattr(self, name) >= 0, ">= 0 (0: off)")
        require(self, "cutmix_alpha", self.mixup_alpha == 0 or self.cutmix_alpha == 0,
                "0 when mixup_alpha is set (one way of mixing images at a time)")
        require(self, "loss", self.loss != "complementary_nn" or self.mixup_alpha == self.cutmix_alpha == 0,
                "not complementary_nn when mixing images (its risk is not linear in the labels)")
        rows = self.label_transition
        require(self, "label_transition", self.loss != "forward" or (
            len(rows) > 1 and all(len(r) == len(rows) and all(0 <= p <= 1 for p in r) and abs(sum(r) - 1) < 1e-4
                                  for r in rows)), "a square matrix of probabilities, rows summing to 1 (loss 'forward')")


def to_dict(cfg) -> dict:
    """A JSON-ready dict of a config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def defaults_of(cfg) -> dict:
    """``to_dict`` of ``cfg``'s class with every field at its default (``rundir.claim``'s ``defaults``)."""
    return to_dict(type(cfg)())


def from_dict(cls, data: dict):
    """Rebuilds a config dataclass from ``to_dict`` output; unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            raise ValueError(f"{cls.__name__} has no field {key!r}")
        kwargs[key] = _coerce(hints[key], value)
    return cls(**kwargs)


def _coerce(hint, value):
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value)
    if typing.get_origin(hint) is tuple:
        inner = typing.get_args(hint)[0]
        return tuple(_coerce(inner, v) for v in value)
    if hint is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(f"expected a whole number, got {value}")
    if hint in (int, float, str):
        return hint(value)
    if hint is bool:
        if isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"not a boolean: {value!r}")
            return value.lower() in ("true", "1", "yes")
        return bool(value)
    return value


def override(cfg, assignment: str):
    """Returns ``cfg`` with one ``dotted.path=value`` assignment applied (value as JSON or text).

    Text is split on commas only for a tuple field (``models=a,b``); any other text is kept whole
    (a path may hold a comma). A nested config whose model the parent shares (``SHARES_MODEL``) is refused a model of its own.
    """
    path, sep, text = assignment.partition("=")
    if not sep:
        raise ValueError(f"override {assignment!r} is not of the form path.to.field=value")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    return _replace_path(cfg, path.split("."), value)


def _replace_path(cfg, keys, value):
    hints = typing.get_type_hints(type(cfg))
    head = keys[0]
    if head not in hints:
        names = ", ".join(f.name for f in dataclasses.fields(cfg))
        raise ValueError(f"{type(cfg).__name__} has no field {head!r} (fields: {names})")
    if len(keys) > 1 and keys[1] == "model" and head in getattr(cfg, "SHARES_MODEL", ()):
        raise ValueError(f"{'.'.join(keys)}: {head} trains {type(cfg).__name__}'s one model; "
                         f"set {'.'.join(['model', *keys[2:]])} instead")
    if len(keys) > 1:
        new = _replace_path(getattr(cfg, head), keys[1:], value)
    else:
        if typing.get_origin(hints[head]) is tuple and not isinstance(value, list):
            value = [v.strip() for v in value.split(",")] if isinstance(value, str) else [value]
        try:
            new = _coerce(hints[head], value)
        except ValueError as err:
            raise ValueError(f"{type(cfg).__name__}.{head}: {err}") from err
    return dataclasses.replace(cfg, **{head: new})
