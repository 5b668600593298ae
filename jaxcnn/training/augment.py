"""Random affine and elastic distortions of a batch, on the device, inside the jitted step.

Small rotations, scalings, shears and shifts are the variations between writers' hands (Simard et
al. 2003; Ciresan et al. 2012); flips are not, since they turn characters into other characters
(b/d, p/q) or into nothing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

from jaxcnn.config import AugmentConfig


# Test-time augmentation: the image itself and fixed views (rotation in degrees, scale), whose
# predictions are averaged. Milder than the training distortions: each view must stay typical.
TTA_VIEWS = ((0.0, 1.0), (-8.0, 1.0), (8.0, 1.0), (0.0, 0.92), (0.0, 1.08))


def affine_matrix(theta, shear, scale):
    """The inverse map (output to input coordinates) of a rotation, a shear and a per-axis scale."""
    c, s = jnp.cos(theta), jnp.sin(theta)
    rotation = jnp.array([[c, -s], [s, c]])
    shearing = jnp.array([[1.0, jnp.tan(shear)], [0.0, 1.0]])
    return rotation @ shearing @ jnp.diag(1.0 / scale)


def _random_affine(key, cfg: AugmentConfig):
    """One inverse affine map (2x2 matrix, shift) from output to input pixel coordinates."""
    k_rot, k_scale, k_shear, k_shift = jax.random.split(key, 4)
    theta = jnp.deg2rad(cfg.rotate_deg) * jax.random.uniform(k_rot, minval=-1, maxval=1)
    shear = jnp.deg2rad(cfg.shear_deg) * jax.random.uniform(k_shear, minval=-1, maxval=1)
    scale = 1.0 + cfg.scale * jax.random.uniform(k_scale, (2,), minval=-1, maxval=1)
    shift = cfg.shift_px * jax.random.uniform(k_shift, (2,), minval=-1, maxval=1)
    return affine_matrix(theta, shear, scale), shift


def warp(image, matrix, shift, displacement=None):
    """Resamples a float image [H, W] through an inverse affine map about its centre (bilinear)."""
    h, w = image.shape
    centre = jnp.array([(h - 1) / 2, (w - 1) / 2])
    grid = jnp.stack(jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij"), -1).astype(jnp.float32)
    coords = (grid - centre - shift) @ matrix.T + centre
    if displacement is not None:
        coords = coords + displacement
    return map_coordinates(image, [coords[..., 0], coords[..., 1]], order=1, mode="constant", cval=0.0)


def _gaussian_blur(field, sigma: float):
    """Separable Gaussian blur of a [H, W] field (zero padding)."""
    radius = max(1, int(3 * sigma))
    x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    kernel = jnp.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    field = jax.vmap(lambda row: jnp.convolve(row, kernel, mode="same"))(field)
    return jax.vmap(lambda col: jnp.convolve(col, kernel, mode="same"), in_axes=1, out_axes=1)(field)


REFERENCE_SIZE = 28  # the lengths of ``AugmentConfig`` (shift, elastic) are pixels of a 28-px image


def distort_image(key, image, cfg: AugmentConfig):
    """Distorts one float image [H, W] with a random affine map and, optionally, an elastic field;
    lengths scale with the image (``REFERENCE_SIZE``), so a larger crop gets the same distortions."""
    k_affine, k_elastic = jax.random.split(key)
    pixels = image.shape[0] / REFERENCE_SIZE
    matrix, shift = _random_affine(k_affine, cfg)
    displacement = None
    if cfg.elastic_alpha:
        noise = jax.random.uniform(k_elastic, (2, *image.shape), minval=-1, maxval=1)
        blurred = [_gaussian_blur(n, cfg.elastic_sigma * pixels) for n in noise]
        displacement = cfg.elastic_alpha * pixels * jnp.stack(blurred, -1)
    return warp(image, matrix, shift * pixels, displacement)


def augment_batch(key, images, cfg: AugmentConfig):
    """images float [B, H, W, 1] -> the same shape, each image distorted independently."""
    if not cfg.enabled:
        return images
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(distort_image, in_axes=(0, 0, None))(keys, images[..., 0], cfg)[..., None]


GEOMETRY_SHIFT = 0.05  # jitter of the character's centre, as a fraction of the page


def augment_geometry(key, geometry, cfg: AugmentConfig):
    """Page geometry float [B, 5] (``preprocess.GEOMETRY_FEATURES``) jittered as the page would be:
    one random scale per image for its three sizes (the ``scale`` range, as the pixels get) and a
    shift of its centre of up to GEOMETRY_SHIFT of the page."""
    if not cfg.enabled:
        return geometry
    k_scale, k_shift = jax.random.split(key)
    log_scale = jnp.log1p(cfg.scale * jax.random.uniform(k_scale, (geometry.shape[0], 1), minval=-1, maxval=1))
    shift = GEOMETRY_SHIFT * jax.random.uniform(k_shift, (geometry.shape[0], 2), minval=-1, maxval=1)
    jitter = jnp.concatenate([log_scale, log_scale, shift, log_scale], axis=1)
    return geometry + jitter.astype(geometry.dtype)


def mix_batch(key, images, mixup_alpha: float, cutmix_alpha: float):
    """Mixes each image with the next one of the (shuffled) batch: ``(images, partner, weight)``.

    mixup blends whole images with weight ``lam ~ Beta(alpha, alpha)`` (Zhang et al. 2018); CutMix
    pastes a box of the partner covering ``1 - lam`` of the image and sets ``lam`` to what is left
    (Yun et al. 2019). The loss is ``lam * loss(label) + (1 - lam) * loss(label[partner])``; one
    ``lam`` per batch, as in both papers' code.
    """
    alpha = mixup_alpha or cutmix_alpha
    k_lam, k_box = jax.random.split(key)
    lam = jax.random.beta(k_lam, alpha, alpha)
    partner = jnp.roll(jnp.arange(images.shape[0]), -1)
    other = images[partner]
    if mixup_alpha:
        return lam * images + (1 - lam) * other, partner, lam
    box = _cutmix_box(k_box, images.shape[1:3], lam)
    return jnp.where(box[None, :, :, None], other, images), partner, 1 - box.mean()


def _cutmix_box(key, shape, lam):
    """A boolean [H, W] box of about ``1 - lam`` of the area, centred uniformly, clipped at the edges."""
    ratio = jnp.sqrt(1 - lam)
    centre = jax.random.uniform(key, (2,)) * jnp.array(shape)
    sides = [jnp.arange(n) for n in shape]
    inside = [(i >= jnp.round(c - ratio * n / 2)) & (i < jnp.round(c + ratio * n / 2))
              for i, c, n in zip(sides, centre, shape)]
    return inside[0][:, None] & inside[1][None, :]


@jax.jit
def tta_views(images):
    """uint8 [N, H, W] -> uint8 [len(TTA_VIEWS), N, H, W]: every image under each fixed view."""
    floats = images.astype(jnp.float32)
    views = []
    for degrees, scale in TTA_VIEWS:
        matrix = affine_matrix(jnp.deg2rad(degrees), 0.0, jnp.full(2, scale))
        warped = jax.vmap(lambda image: warp(image, matrix, jnp.zeros(2)))(floats)
        views.append(jnp.clip(jnp.round(warped), 0, 255).astype(jnp.uint8))
    return jnp.stack(views)
