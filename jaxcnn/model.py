"""A small CNN for square character images, split into a conv trunk and a classifier head.

The trunk is VGG-style (``Trunk``) or residual (``ResidualTrunk``). The parameter tree is
``{"trunk": ..., "head": ...}`` so that transfer (parts 2 and 3) can graft the trunk of one model
into another by name (see ``jaxcnn.training.transfer``). The head may also take a small vector of
page geometry (``jaxcnn.data.preprocess.page_geometry``): the trunk still sees only the image, so
it grafts onto MNIST models unchanged. ``make_model`` builds (once) the CNN of a ``ModelConfig``.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.config import ModelConfig
from jaxcnn.data.preprocess import GEOMETRY_FEATURES


def max_pool_2x2(x):
    """2x2 max-pool with stride 2 over [B, H, W, C], odd sizes floored, as ``nn.max_pool`` (VALID).

    On the CPU it is a reshape and a max, whose gradient is a mask of the maxima: XLA:CPU runs the
    select-and-scatter that ``nn.max_pool``'s gradient becomes 6x to 7.5x slower (benchmarks/README.md).
    The two differ only where a window holds equal maxima: ``nn.max_pool`` sends the gradient to the
    first, the max splits it. After a ReLU such ties are zeros, whose gradient the ReLU stops anyway.
    Other backends keep ``nn.max_pool``.
    """
    if jax.default_backend() != "cpu":
        return nn.max_pool(x, (2, 2), strides=(2, 2))
    b, h, w, c = x.shape
    return x[:, :h // 2 * 2, :w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def param_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """Parameters stay float32 under a 16-bit compute dtype (mixed precision) and follow float64,
    which the equivalence tests train in so that rounding cannot flip Adam's steps."""
    return jnp.promote_types(dtype, jnp.float32)


def batch_norm(dtype: jnp.dtype, train: bool, name: str) -> nn.BatchNorm:
    """BatchNorm (momentum 0.9) computing in ``dtype``; statistics reduce in float32, or in float64."""
    wide = param_dtype(dtype)
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=dtype, param_dtype=wide,
                        force_float32_reductions=wide == jnp.float32, name=name)


class Trunk(nn.Module):
    """Stacks of two 3x3 conv -> BatchNorm -> ReLU, then 2x2 max-pool (Simonyan & Zisserman 2015)."""

    widths: Sequence[int] = (32, 64, 128)
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        for block, width in enumerate(self.widths):
            for layer in range(2):
                x = nn.Conv(width, (3, 3), use_bias=False, dtype=self.dtype, param_dtype=param_dtype(self.dtype),
                            name=f"conv{block}_{layer}")(x)
                x = batch_norm(self.dtype, train, f"bn{block}_{layer}")(x)
                x = nn.relu(x)
            x = max_pool_2x2(x)
        return x


def conv(width: int, size: int, dtype: jnp.dtype, name: str, strides: int = 1) -> nn.Conv:
    return nn.Conv(width, (size, size), strides=strides, use_bias=False, dtype=dtype,
                   param_dtype=param_dtype(dtype), name=name)


class PreActivationBlock(nn.Module):
    """BatchNorm -> ReLU -> 3x3 conv, twice, added to the input (He et al. 2016, "Identity mappings in
    deep residual networks"); a strided 1x1 convolution of the activated input where the shape changes."""

    width: int
    strides: int
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x, train: bool):
        y = nn.relu(batch_norm(self.dtype, train, "bn0")(x))
        shortcut = x
        if self.strides != 1 or x.shape[-1] != self.width:
            shortcut = conv(self.width, 1, self.dtype, "shortcut", self.strides)(y)
        y = conv(self.width, 3, self.dtype, "conv0", self.strides)(y)
        y = nn.relu(batch_norm(self.dtype, train, "bn1")(y))
        return shortcut + conv(self.width, 3, self.dtype, "conv1")(y)


class ResidualTrunk(nn.Module):
    """A 3x3 stem, then a stage of ``blocks`` pre-activation blocks per width (each stage after the
    first halves the resolution), a last BatchNorm -> ReLU and global average pooling: [B, widths[-1]]
    whatever the input size, so the parameter tree does not depend on it."""

    widths: Sequence[int] = (32, 64, 128)
    blocks: int = 2
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        x = conv(self.widths[0], 3, self.dtype, "stem")(x)
        for stage, width in enumerate(self.widths):
            for block in range(self.blocks):
                strides = 2 if stage > 0 and block == 0 else 1
                x = PreActivationBlock(width, strides, self.dtype, name=f"stage{stage}_block{block}")(x, train)
        x = nn.relu(batch_norm(self.dtype, train, "bn_out")(x))
        return x.mean(axis=(1, 2))


class Head(nn.Module):
    """Flatten (joined by the embedded page geometry, if given) -> dense -> BatchNorm -> ReLU ->
    dropout -> logits."""

    num_classes: int
    hidden: int = 256
    dropout: float = 0.5
    dtype: jnp.dtype = jnp.float32
    geometry_skip: bool = False  # the standardised geometry also reaches the logits linearly

    @nn.compact
    def __call__(self, x, train: bool, geometry=None):
        x = x.reshape((x.shape[0], -1))
        wide = param_dtype(self.dtype)
        skip = 0.0
        if geometry is not None:  # a few numbers beside ~1,000 features: standardised, then embedded
            standard = batch_norm(self.dtype, train, "geometry_bn")(geometry.astype(self.dtype))
            g = nn.relu(nn.Dense(GEOMETRY_EMBEDDING, dtype=self.dtype, param_dtype=wide, name="geometry")(standard))
            x = jnp.concatenate([x, g], axis=-1)
            if self.geometry_skip:  # a linear discriminant on the page alone, past the dropout
                skip = nn.Dense(self.num_classes, use_bias=False, dtype=self.dtype, param_dtype=wide,
                                name="geometry_logits")(standard)
        x = nn.Dense(self.hidden, use_bias=False, dtype=self.dtype, param_dtype=wide, name="dense")(x)
        x = batch_norm(self.dtype, train, "bn")(x)
        x = nn.relu(x)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=wide, name="logits")(x) + skip


GEOMETRY_EMBEDDING = 32


class CNN(nn.Module):
    """images float [B, S, S, 1] in [0, 1] (and page geometry float [B, F]) -> logits float32
    [B, num_classes] (float64 for float64). ``image_size`` is S, which the parameters are made for
    (the VGG trunk's features are flattened, so its head's shape depends on it)."""

    num_classes: int
    widths: Sequence[int] = (32, 64, 128)
    hidden: int = 256
    dropout: float = 0.5
    dtype: jnp.dtype = jnp.float32
    geometry_features: int = 0  # F > 0: the head takes page geometry float [B, F]
    geometry_skip: bool = False  # and a linear path from it to the logits
    trunk: str = "vgg"  # or "resnet": ResidualTrunk
    blocks: int = 2  # residual blocks per stage
    image_size: int = 28

    @nn.compact
    def __call__(self, x, train: bool = False, train_trunk: bool | None = None, geometry=None):
        """``train_trunk=False`` keeps the trunk in inference mode (frozen BatchNorm statistics)."""
        trunk_train = train if train_trunk is None else train_trunk
        trunk = ResidualTrunk(self.widths, self.blocks, self.dtype, name="trunk") if self.trunk == "resnet" else \
            Trunk(self.widths, self.dtype, name="trunk")
        x = trunk(x.astype(self.dtype), trunk_train)
        logits = Head(self.num_classes, self.hidden, self.dropout, self.dtype, self.geometry_skip,
                      name="head")(x, train, geometry)
        return logits.astype(param_dtype(self.dtype))


def make_model(num_classes: int, cfg: ModelConfig) -> CNN:
    """The CNN of ``cfg``; float64 needs 64-bit JAX (``JAX_ENABLE_X64=1`` or ``jax.enable_x64``)."""
    if cfg.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("model.dtype float64 needs 64-bit JAX: set JAX_ENABLE_X64=1 (or use float32)")
    return _model(num_classes, cfg)


@functools.lru_cache(maxsize=None)
def _model(num_classes: int, cfg: ModelConfig) -> CNN:
    """One instance per architecture: a train state holds its ``apply`` (a method bound to the instance,
    compared by identity), so runs of one architecture get an equal state structure and share programs."""
    return CNN(num_classes, tuple(cfg.widths), cfg.hidden, cfg.dropout, jnp.dtype(cfg.dtype),
               len(GEOMETRY_FEATURES) if cfg.page_geometry else 0, cfg.geometry_skip, trunk=cfg.trunk,
               blocks=cfg.blocks, image_size=cfg.image_size)
