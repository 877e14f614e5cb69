"""A trained feed-forward style network, loaded from its model file as a callable over images:
``jaxstyle.load_model(path)``.

The file (:mod:`jaxstyle.io.model_file`) holds the parameters and, in its metadata, the
architecture of the :class:`~jaxstyle.model.transformer.TransformerNet` they belong to, the
objective it was trained with, the styles' names and thumbnails. Loading checks that the
parameters are exactly those the architecture makes (names, shapes, float, finite), so a file
that reads but does not fit is one line naming it, never a shape error deep in a trace.

One model carries ``S`` styles (conditional instance norm, Dumoulin et al. 2017); each image is
stylized by a *mix*: one weight per style, normalised to sum to 1 (one-hot: one style; others
interpolate between them).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxstyle.engine.training import apply_network
from jaxstyle.io.model_file import ModelFileError, model_info, read_model
from jaxstyle.io.storage import Location
from jaxstyle.model.transformer import TransformerNet

AS_TRAINED = "model"  # preserve_colors: the mode the model was trained with (its objective's)
COLOR_MODES = (None, "luminance")
_ARCHITECTURE = ("width", "styles", "residual_blocks")
KIND = "johnson2016"  # the architecture's kind in the metadata: TransformerNet


@dataclasses.dataclass(frozen=True, eq=False)
class FeedForwardModel:
    """A trained network and what its file says of it. Call it on images (see :meth:`__call__`).

    network: the :class:`TransformerNet`; params: its parameters (jax float32 arrays, nested
    dicts); metadata: the file's (architecture, objective, vgg, styles, steps, size, ...);
    thumbnails: one uint8 [h, w, 3] image per style (none if the file has none); source: the file."""

    network: TransformerNet
    params: Mapping
    metadata: Mapping
    thumbnails: tuple[np.ndarray, ...] = ()
    source: str = ""

    @property
    def styles(self) -> tuple[str, ...]:
        """The styles' names, in the order of the mix's weights."""
        return tuple(self.metadata["styles"])

    @property
    def preserve_colors(self) -> str | None:
        """The colour mode the model was trained with (None or "luminance"): its default."""
        return (self.metadata.get("objective") or {}).get("preserve_colors")

    def mix(self, weights=None, batch: int = 1) -> np.ndarray:
        """The mix of ``batch`` images, float32 [batch, S], rows summing to 1 (:func:`style_mix`)."""
        return style_mix(self.styles, weights, batch, what=self.source or "the model")

    def __call__(self, images: ArrayLike, mix=None, *, preserve_colors: str | None = AS_TRAINED) -> jax.Array:
        """Stylize ``images`` float32 [B, H, W, 3] in [0, 1] (any H, W >= 1; [H, W, 3]: one image, returned
        without the batch axis) -> float32 of the same shape in [0, 1]. Jit-compiled once per shape.

        mix: None (a one-style model's style), a style's name or index, weights [S] (every image) or
        [B, S] (each its own); normalised to sum to 1. preserve_colors: "model" (default: as the model
        was trained), None (the network's colours) or "luminance" (the network sees the luminance and
        the output keeps the input's colours). Sharded images give sharded outputs."""
        if preserve_colors == AS_TRAINED:
            preserve_colors = self.preserve_colors
        if preserve_colors not in COLOR_MODES:
            raise ValueError(f"expected preserve_colors 'model', None or 'luminance', got {preserve_colors!r}")
        if not isinstance(images, jax.Array):
            images = np.asarray(images)
        one = images.ndim == 3
        x = images[None] if one else images
        if x.ndim != 4 or x.shape[-1] != 3 or min(x.shape[1:3]) < 1 or not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"expected images float [B, H, W, 3] or [H, W, 3] in [0, 1], got {x.dtype} "
                             f"{list(images.shape)}")
        y = apply_network(self.params, self.network, x, self.mix(mix, x.shape[0]),
                          preserve_colors=preserve_colors)
        return y[0] if one else y


def style_mix(styles: Sequence[str], weights, batch: int, *, what: str = "the model") -> np.ndarray:
    """float32 [batch, S] style weights, rows summing to 1, from ``weights``: None (only for a model
    of one style), a style's name or index (one-hot), [S] (every image) or [batch, S]. ValueError
    ("expected X, got Y", naming ``what`` and its styles) for a wrong count, a negative or non-finite
    weight, or a row of zeros."""
    count = len(styles)
    names = ", ".join(styles)
    if weights is None:
        if count != 1:
            raise ValueError(f"{what} holds {count} styles ({names}): expected a style (a name or index) or a mix "
                             f"of {count} weights, got none")
        weights = [1.0]
    elif isinstance(weights, str | int | np.integer) and not isinstance(weights, bool):
        weights = np.eye(count, dtype=np.float32)[style_index(styles, weights, what=what)]
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        w = np.broadcast_to(w, (batch, w.shape[0]))
    if w.ndim != 2 or w.shape != (batch, count):
        got = np.shape(weights)
        raise ValueError(f"expected {count} style weights (one per style of {what}: {names}) or [{batch}, {count}], "
                         f"got shape {list(got)}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"expected finite style weights >= 0, got {np.asarray(weights).tolist()}")
    total = w.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        raise ValueError(f"expected style weights with a positive sum, got {np.asarray(weights).tolist()}")
    return (w / total).astype(np.float32)


def style_index(styles: Sequence[str], style: str | int, *, what: str = "the model") -> int:
    """The index of ``style``: a name of ``styles`` or an index (as a number or its text)."""
    if isinstance(style, str) and style in styles:
        return list(styles).index(style)
    try:
        index = int(style)
    except (TypeError, ValueError):
        index = -1
    if isinstance(style, bool) or not 0 <= index < len(styles) or (isinstance(style, str) and not style.isdigit()):
        raise ValueError(f"expected a style of {what}: one of {', '.join(styles)} or an index 0..{len(styles) - 1}, "
                         f"got {style!r}")
    return index


def network_of(where, metadata: Mapping) -> TransformerNet:
    """The :class:`TransformerNet` the metadata's ``architecture`` describes, its ``styles`` names
    checked against it; ModelFileError (one line naming ``where``) when they are missing or wrong."""
    arch = metadata.get("architecture")
    if not isinstance(arch, Mapping) or not all(isinstance(arch.get(k), int) and not isinstance(arch.get(k), bool)
                                                for k in _ARCHITECTURE):
        raise ModelFileError(f"{where}: not a feed-forward style model (expected an architecture with integer "
                             f"{', '.join(_ARCHITECTURE)}, got {arch!r})")
    if arch.get("kind", KIND) != KIND:
        raise ModelFileError(f"{where}: a network of kind {arch['kind']!r}, expected {KIND!r} (a newer jaxstyle's?)")
    if arch["width"] < 1 or arch["styles"] < 1 or arch["residual_blocks"] < 0:
        raise ModelFileError(f"{where}: expected width >= 1, styles >= 1, residual_blocks >= 0, got {dict(arch)}")
    styles = metadata.get("styles")
    if not isinstance(styles, list) or len(styles) != arch["styles"] or not all(
            isinstance(s, str) and s for s in styles):
        raise ModelFileError(f"{where}: expected {arch['styles']} style names (its architecture's), got {styles!r}")
    if len(set(styles)) != len(styles):
        raise ModelFileError(f"{where}: expected distinct style names, got {styles}")
    return TransformerNet(width=arch["width"], styles=arch["styles"], residual_blocks=arch["residual_blocks"])


def check_parameters(where, params: Mapping, network: TransformerNet) -> None:
    """ModelFileError (one line naming ``where``) unless ``params`` are exactly those ``network`` makes:
    the same names and shapes (``jax.eval_shape`` of its init), float, finite."""
    image = jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32)
    mix = jax.ShapeDtypeStruct((1, network.styles), jnp.float32)
    expected = _shapes(jax.eval_shape(network.init, jax.random.key(0), image, mix)["params"])
    got = _shapes(params)
    problems = [f"missing {k}" for k in sorted(expected.keys() - got.keys())]
    problems += [f"unexpected {k}" for k in sorted(got.keys() - expected.keys())]
    problems += [f"{k} is {list(got[k][0])}, expected {list(expected[k][0])}"
                 for k in sorted(expected.keys() & got.keys()) if got[k][0] != expected[k][0]]
    problems += [f"{k} is {got[k][1]}, expected a float" for k in sorted(got)
                 if k in expected and not np.issubdtype(got[k][1], np.floating)]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        arch = ", ".join(f"{k} {getattr(network, k)}" for k in _ARCHITECTURE)
        raise ModelFileError(f"{where}: its parameters do not fit its architecture ({arch}): "
                             f"{'; '.join(problems[:3])}{more}")
    bad = [k for k, leaf in _leaves(params) if not np.all(np.isfinite(leaf))]
    if bad:
        raise ModelFileError(f"{where}: non-finite parameters in {', '.join(bad[:3])}")


def _leaves(tree: Mapping, prefix: str = ""):
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            yield from _leaves(value, f"{key}/")
        else:
            yield key, value


def _shapes(tree: Mapping) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    return {k: (tuple(np.shape(v)), np.dtype(v.dtype)) for k, v in _leaves(tree)}


def load_model(path: str | os.PathLike | Location) -> FeedForwardModel:
    """The model in ``path`` (a file ``jaxstyle train`` wrote; a path or URL), checked: ModelFileError
    (a ValueError, one line naming the file) for a missing, truncated, altered or foreign file, or
    parameters that do not fit the architecture its metadata states."""
    params, metadata, thumbnails = read_model(path)
    network = network_of(path, metadata)
    check_parameters(path, params, network)
    objective = metadata.get("objective", {})
    if not isinstance(objective, Mapping) or objective.get("preserve_colors") not in COLOR_MODES:
        got = objective.get("preserve_colors") if isinstance(objective, Mapping) else objective
        raise ModelFileError(f"{path}: expected its objective's preserve_colors None or 'luminance', got {got!r}")
    arrays = jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float32), params)
    return FeedForwardModel(network, arrays, metadata, tuple(thumbnails), str(path))


def describe_model(path: str | os.PathLike | Location) -> dict:
    """What ``jaxstyle model info`` shows: :func:`~jaxstyle.io.model_file.model_info` of a file that
    :func:`load_model` would take (the same checks, nothing placed on a device)."""
    info = model_info(path)
    params, metadata, _ = read_model(path)
    check_parameters(path, params, network_of(path, metadata))
    return info
