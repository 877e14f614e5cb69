"""The inputs of one (content, style) pair, checked once, for a single run and for every pair of
a batch alike: the images, the masks, the blend weights and colour mode applied, the stages of a
coarse-to-fine run and the size check of each, and the start image.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxstyle.config import StyleConfig, blend_weights
from jaxstyle.model.vgg import check_image_size
from jaxstyle.objective import color
from jaxstyle.objective.resample import resize, scaled


def check_image(array: ArrayLike, what: str) -> jax.Array:
    """``array`` as float32 [H, W, 3] RGB in [0, 1]; ValueError naming ``what`` otherwise."""
    a = np.asarray(array, dtype=np.float32)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected {what} as float [H, W, 3] RGB, got shape {a.shape}")
    if not np.isfinite(a).all() or a.min() < -1e-3 or a.max() > 1 + 1e-3:
        raise ValueError(f"expected {what} values in [0, 1], got range "
                         f"[{np.nanmin(a):.3g}, {np.nanmax(a):.3g}]")
    return jnp.asarray(np.clip(a, 0.0, 1.0))


def check_mask(array: ArrayLike, what: str) -> np.ndarray:
    """A mask [H, W] (or an RGB image, taken by luminance) with values in [0, 1]."""
    a = np.asarray(array, dtype=np.float32)
    if a.ndim == 3 and a.shape[-1] == 3:
        a = color.luminance(a).astype(np.float32)
    if a.ndim != 2 or not np.isfinite(a).all() or a.min() < -1e-3 or a.max() > 1 + 1e-3:
        raise ValueError(f"expected {what} as float [H, W] in [0, 1], got shape {a.shape}")
    return np.clip(a, 0.0, 1.0)


def style_list(style) -> list:
    """One style image [H, W, 3] or a sequence of them -> a list."""
    if isinstance(style, (list, tuple)):
        return list(style)
    a = np.asarray(style)
    return [a] if a.ndim == 3 else list(a)


@dataclasses.dataclass(frozen=True)
class PairInputs:
    """A checked pair. original: the content float32 [H, W, 3] as given; content: what is
    optimised towards (``preserve_colors`` applied); styles: the style images (colour mode
    applied), any sizes; style_masks: one [h, w] mask or None per style image, in its shape;
    content_mask: [H, W] grey levels or None; blend: one weight per style image, summing to 1."""

    original: np.ndarray
    content: np.ndarray
    styles: tuple[np.ndarray, ...]
    style_masks: tuple[np.ndarray | None, ...]
    content_mask: np.ndarray | None
    blend: tuple[float, ...]


def prepare_pair(content: ArrayLike, style, config: StyleConfig, *, content_mask: ArrayLike | None = None,
                 style_masks=None, style_blend=None, name: str = "") -> PairInputs:
    """Check one pair's inputs and apply the colour mode. ``style_blend`` overrides
    ``config.style_blend`` for this pair; ``name`` (e.g. "of pair 3") goes into messages."""
    of = f" {name}" if name else ""
    original = np.asarray(check_image(content, f"content image{of}"))
    styles = [np.asarray(check_image(s, f"style image {i + 1}{of}" if i else f"style image{of}"))
              for i, s in enumerate(style_list(style))]
    if not styles:
        raise ValueError(f"expected at least one style image{of}, got none")
    style_masks = [None] * len(styles) if style_masks is None else list(style_masks)
    if len(style_masks) != len(styles):
        raise ValueError(f"expected {len(styles)} style masks{of} (one per style image), got {len(style_masks)}")
    style_masks = [None if m is None else check_mask(m, f"style mask {i + 1}{of}") for i, m in enumerate(style_masks)]
    style_blend = config.style_blend if style_blend is None else style_blend
    if content_mask is not None:
        if style_blend is not None:
            raise ValueError("give a content mask or style blend weights, not both: the mask decides "
                             "which style goes where")
        if len(styles) < 2:
            raise ValueError(f"expected a content mask{of} to split the image between at least 2 styles, "
                             f"got {len(styles)}")
        content_mask = check_mask(content_mask, f"content mask{of}")  # any size: resized to each stage's
    blend = blend_weights(style_blend, len(styles))
    prepared, styles = color.prepare(original, styles, config.preserve_colors)
    return PairInputs(original=original, content=np.asarray(prepared), styles=tuple(styles),
                      style_masks=tuple(style_masks), content_mask=content_mask, blend=blend)


def stage_shapes(height: int, width: int, scales: tuple[int, ...]) -> list[tuple[int, int]]:
    """(h, w) of each coarse-to-fine stage: ``scales`` as longest sides, then the full size."""
    longest = max(height, width)
    if scales and scales[-1] >= longest:
        raise ValueError(f"expected coarse scales smaller than the output's longest side {longest} px, "
                         f"got {', '.join(map(str, scales))}")
    return [(max(1, round(height * s / longest)), max(1, round(width * s / longest))) for s in scales] + [
        (height, width)]


def check_stage_sizes(height: int, width: int, style_shapes, config: StyleConfig, *,
                      content_name: str = "content image", style_names=None) -> None:
    """Every stage of a run at ``height`` x ``width`` (``config.scales``) is large enough for the
    network's poolings, for the content and for each style image (``style_shapes``: (h, w) at the
    full size, scaled with each stage); ValueError naming the image (``content_name``,
    ``style_names``: e.g. file names) and the stage otherwise."""
    if style_names is None:
        style_names = [f"style image{f' {i + 1}' if i else ''}" for i in range(len(style_shapes))]
    shapes = stage_shapes(height, width, config.scales)
    for h, w in shapes:
        at = "" if (h, w) == shapes[-1] else f" at the {max(h, w)} px scale"
        check_image_size(h, w, config.all_layers, f"{content_name}{at}")
        for name, shape in zip(style_names, style_shapes):
            check_image_size(*scaled(shape, h / height), config.style_layers, f"{name}{at}")


def initial_image(content: jax.Array, config: StyleConfig, init_image: ArrayLike | None = None,
                  style: jax.Array | None = None, seed: int | None = None) -> jax.Array:
    """The start of the optimisation: ``init_image``, or ``config.init`` (content, noise, or
    ``style`` resized to the content's shape), mixed with uniform noise by ``config.init_noise_blend``."""
    seed = config.seed if seed is None else seed
    noise = lambda: jax.random.uniform(jax.random.key(seed), content.shape, jnp.float32)  # noqa: E731
    if init_image is not None:
        start = check_image(init_image, "init image")
        if start.shape != content.shape:
            raise ValueError(f"expected init image of shape {content.shape}, got {start.shape}")
    elif config.init == "noise":
        return noise()
    elif config.init == "style":
        if style is None:
            raise ValueError("expected a style image for init='style'")
        start = resize(jnp.asarray(style), content.shape[:2])
    else:
        start = jnp.asarray(content)
    if config.init_noise_blend:
        start = (1.0 - config.init_noise_blend) * start + config.init_noise_blend * noise()
    return start


def grey_init(init_image: ArrayLike | None, config: StyleConfig) -> ArrayLike | None:
    """A user's start image as the optimisation sees it: grey under ``preserve_colors="luminance"``."""
    if init_image is None or config.preserve_colors != "luminance":
        return init_image
    return color.grey(color.luminance(check_image(init_image, "init image")))


def restore_colors(image: np.ndarray, original: np.ndarray, preserve_colors: str | None) -> np.ndarray:
    """The optimised image [h, w, 3] with the content's colours put back (``preserve_colors=
    "luminance"`` optimises luminance only), at the image's size; otherwise the image itself."""
    if preserve_colors != "luminance":
        return image
    return color.finish(image, np.asarray(resize(jnp.asarray(original), image.shape[:2])), "luminance")
