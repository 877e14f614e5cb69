"""The image transformation network of feed-forward style transfer, as a pure Flax module.

Johnson, Alahi & Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and Super-Resolution"
(2016): a 9x9 convolution, two stride-2 downsamplings, residual blocks, two upsamplings and a 9x9
convolution back to RGB, trained once per style with the perceptual objective. With the field's
later changes (each a deliberate deviation from the paper):

* instance normalisation instead of batch normalisation (Ulyanov, Vedaldi & Lempitsky 2017,
  "Improved Texture Networks"), *conditional*: one scale and shift per style, mixed per image by a
  row of style weights, so one network carries several styles and interpolates between them
  (Dumoulin, Shlens & Kudlur 2017, "A Learned Representation for Artistic Style");
* reflection padding everywhere instead of zero padding (no dark borders);
* nearest-neighbour x2 upsampling followed by a convolution instead of transposed convolutions
  (Odena, Dumoulin & Olah 2016, "Deconvolution and Checkerboard Artifacts");
* a sigmoid output instead of Johnson's scaled tanh, so the output is always an image in [0, 1].

Convolutions followed by a normalisation carry no bias (the normalisation removes it). No I/O.

**Speed on CPU.** XLA:CPU's convolutions are slow at this network's shapes: the 9x9 ones with 3
input or output channels run at 3-11 GFLOP/s, the 3x3 ones after an upsampling at 20-50, where a
matrix product runs at 150. ``conv="matmul"`` (what "auto" picks on CPU) computes the same
function with the same parameters by rewriting each layer, mathematically exactly:

* a 3x3 convolution: one matrix product (:func:`conv_matmul`: the patches times the kernel, or,
  with fewer output channels than input ones, each pixel times the kernel then shifted sums), its
  two gradients likewise;
* the 9x9 convolutions: space-to-depth (:func:`conv_space_to_depth`): 2x2 blocks make the first a
  5x5 convolution of 12 -> 128 channels, 4x4 blocks the last a 3x3 one of 512 -> 48, each then one
  matrix product;
* an upsampling and its 3x3 convolution: four 2x2 convolutions on the small grid, one per output
  phase (:func:`conv_upsampled`: 2.25x fewer multiplications);
* the stride-2 3x3 downsamplings stay ``lax.conv`` (as fast as the rewrites measured).

Measured on this project's 2-core Xeon (AVX-512, shared with other jobs: load average 4-7), one
256 x 256 image, ``python -m benchmarks.transformer_layers``: a forward pass in ~200 ms instead of
~780 (conv_out 310 -> 20 ms, conv_in 99 -> 14, up_2 104 -> 19, up_1 44 -> 14, each residual
convolution 15 -> 11), forward and backward ~1.0 s instead of ~1.7. Results match "direct" to
float32 rounding (about 1e-6 relative; the tests in tests/model/test_transformer_speed_paths.py).
Elsewhere "auto" keeps ``lax.conv``: cuDNN's convolutions are good, and the patch matrices (9x an
activation) would cost accelerator memory. (Winograd F(4x4, 3x3), :mod:`jaxstyle.model.winograd`,
was no faster for the whole forward pass here, and its 10x larger rounding made 1- and 4-device
training differ after a few Adam steps.)
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

EPSILON = 1e-5  # instance normalisation's variance floor
MULTIPLE = 4  # the two stride-2 downsamplings: inputs are padded to a multiple of this
CONV_MODES = ("auto", "direct", "matmul")


def reflect_pad(x: jax.Array, rows: tuple[int, int], cols: tuple[int, int]) -> jax.Array:
    """``x`` [B, H, W, C] padded by reflection ``rows`` (top, bottom) and ``cols`` (left, right);
    along an axis too short to reflect that far (size <= pad) the edge is repeated instead."""
    for axis, (before, after) in ((1, rows), (2, cols)):
        if before == after == 0:
            continue
        widths = [(0, 0)] * x.ndim
        widths[axis] = (before, after)
        x = jnp.pad(x, widths, mode="reflect" if x.shape[axis] > max(before, after) else "edge")
    return x


class ConditionalInstanceNorm(nn.Module):
    """Instance normalisation (per image, per channel, over H and W) with a scale and shift per
    style: params ``gamma`` [styles, C] (init 1) and ``beta`` [styles, C] (init 0); an image whose
    style weights are ``mix`` [styles] is scaled by ``mix @ gamma`` and shifted by ``mix @ beta``
    (Dumoulin et al. 2017). Statistics in float32 whatever the input dtype."""

    styles: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, mix: jax.Array) -> jax.Array:
        """x [B, H, W, C], mix float32 [B, styles] -> [B, H, W, C] in x's dtype."""
        channels = x.shape[-1]
        gamma = self.param("gamma", nn.initializers.ones, (self.styles, channels), jnp.float32)
        beta = self.param("beta", nn.initializers.zeros, (self.styles, channels), jnp.float32)
        h = x.astype(jnp.float32)
        mean = jnp.mean(h, axis=(1, 2), keepdims=True)
        variance = jnp.mean(jnp.square(h - mean), axis=(1, 2), keepdims=True)
        h = (h - mean) * jax.lax.rsqrt(variance + EPSILON)
        # HIGHEST: a one-hot row must pick its style's values exactly (TF32 matmuls would round them)
        scale = jnp.matmul(mix, gamma, precision=jax.lax.Precision.HIGHEST)
        shift = jnp.matmul(mix, beta, precision=jax.lax.Precision.HIGHEST)
        return (h * scale[:, None, None, :] + shift[:, None, None, :]).astype(x.dtype)


# The convolutions' formulations (see the module docstring): all compute lax.conv's cross-correlation.


def conv_direct(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """VALID cross-correlation of x [B, H, W, I] with kernel [k, k, I, O] by ``lax.conv``."""
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _patches(x: jax.Array, k: int) -> jax.Array:
    """x [B, H + k - 1, W + k - 1, C] -> its k x k patches [B * H * W, k * k * C], ordered (row,
    column, channel) like a kernel [k, k, C, O] flattened."""
    b, height, width = x.shape[0], x.shape[1] - k + 1, x.shape[2] - k + 1
    # Nested stacks: XLA:CPU copies these 2-5x faster than one concatenation of k * k slices.
    rows = [jnp.stack([x[:, i:i + height, j:j + width] for j in range(k)], axis=3) for i in range(k)]
    return jnp.stack(rows, axis=3).reshape(b * height * width, -1)


def _flipped(kernel: jax.Array) -> jax.Array:
    """The kernel of the input gradient: [k, k, I, O] flipped in space, channels swapped: [k, k, O, I]."""
    return jnp.flip(kernel, (0, 1)).swapaxes(2, 3)


def _zero_pad(x: jax.Array, pad: int) -> jax.Array:
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def _matmul_forward(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """:func:`conv_matmul` without its gradient rule."""
    b, height, width, inputs = x.shape
    k, out = kernel.shape[0], kernel.shape[3]
    rows, cols = height - k + 1, width - k + 1
    if inputs <= out:  # patches [B * H * W, k * k * I] times the kernel [k * k * I, O]
        return jnp.dot(_patches(x, k), kernel.reshape(-1, out)).reshape(b, rows, cols, out)
    # every pixel times the kernel [I, k * k * O]: its contribution to the k * k outputs it reaches,
    # then the k * k slices of that moved into place and added
    t = jnp.dot(x.reshape(-1, inputs), kernel.transpose(2, 0, 1, 3).reshape(inputs, -1)).reshape(b, height, width, -1)
    terms = (t[:, i:i + rows, j:j + cols, (i * k + j) * out:(i * k + j + 1) * out] for i in range(k) for j in range(k))
    return functools.reduce(jnp.add, terms)


@jax.custom_vjp
def conv_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """:func:`conv_direct` (stride 1) as one matrix product: when I <= O the patches [B * H * W,
    k * k * I] times the kernel [k * k * I, O]; when I > O each pixel [B * H * W, I] times the kernel
    [I, k * k * O] (its contributions to the k * k outputs it reaches), shifted into place and added.

    The gradients are matrix products too: the input's is this convolution of the zero-padded output
    gradient with the flipped kernel (O -> I channels: the other product when I != O); the kernel's
    contracts the output gradient with x's patches, or x with the output gradient's patches, whichever
    has fewer columns. (Autodiff of the slices above would add k * k zero-padded arrays instead,
    5-30x slower on XLA:CPU.) Rounding is that of ``lax.conv``: plain float32 sums."""
    return _matmul_forward(x, kernel)


def _conv_matmul_fwd(x, kernel):
    return _matmul_forward(x, kernel), (x, kernel)


def _conv_matmul_bwd(residuals, g):
    x, kernel = residuals
    k, _, inputs, out = kernel.shape
    d_x = conv_matmul(_zero_pad(g, k - 1), _flipped(kernel))
    if inputs <= out:
        d_kernel = jnp.tensordot(_patches(x, k), g.reshape(-1, out), axes=(0, 0)).reshape(kernel.shape)
    else:  # x against the output gradient's patches (flipped: the kernel's tap (i, j) is the patch's last - (i, j))
        d_flipped = jnp.tensordot(x.reshape(-1, inputs), _patches(_zero_pad(g, k - 1), k), axes=(0, 0))
        d_kernel = jnp.flip(d_flipped.reshape(inputs, k, k, out), (1, 2)).transpose(1, 2, 0, 3)
    return d_x, d_kernel


conv_matmul.defvjp(_conv_matmul_fwd, _conv_matmul_bwd)


def _space_to_depth_kernel(kernel: jax.Array, factor: int, stride: int) -> jax.Array:
    """The kernel of :func:`conv_space_to_depth`: [taps, taps, f * f * I, p * p * O], p = f / stride
    output phases per block; the entry of tap d, input phase u and output phase a is the kernel's
    row f * d + u - stride * a (zero outside the kernel), and the same for columns."""
    k = kernel.shape[0]
    phases = factor // stride
    taps = (stride * (phases - 1) + k - 1) // factor + 1
    select = np.zeros((taps, factor, phases, k), np.float32)
    for d, u, a in np.ndindex(taps, factor, phases):
        if 0 <= factor * d + u - stride * a < k:
            select[d, u, a, factor * d + u - stride * a] = 1.0
    select = jnp.asarray(select, kernel.dtype)
    blocked = jnp.einsum("duai,evbj,ijco->deuvcabo", select, select, kernel, precision=jax.lax.Precision.HIGHEST)
    return blocked.reshape(taps, taps, factor * factor * kernel.shape[2], phases * phases * kernel.shape[3])


def conv_space_to_depth(x: jax.Array, kernel: jax.Array, *, factor: int, stride: int = 1,
                        inner=conv_direct) -> jax.Array:
    """:func:`conv_direct` at ``stride`` (1 or ``factor``) with x's f x f blocks as channels: a
    k x k convolution of I -> O channels becomes a ceil((k + f - s - 1) / f)-tap one of f * f * I ->
    (f / s)^2 * O channels on a grid f times coarser (``inner`` computes it), whose output phases are
    put back in place. Fewer, wider taps: a 9x9 convolution from 3 channels becomes a 5x5 one from 12
    (f = 2), one to 3 channels a 3x3 one to 48 (f = 4). (The rewrite TPU ResNet-50 implementations
    use for their 7x7 stride-2 first layer.)"""
    b, height, width, c = x.shape
    k, out = kernel.shape[0], kernel.shape[3]
    phases = factor // stride
    blocked = _space_to_depth_kernel(kernel, factor, stride)
    taps = blocked.shape[0]
    rows, cols = -(-((height - k) // stride + 1) // phases), -(-((width - k) // stride + 1) // phases)
    need_h, need_w = factor * (rows + taps - 1), factor * (cols + taps - 1)
    x = jnp.pad(x[:, :need_h, :need_w], ((0, 0), (0, max(0, need_h - height)), (0, max(0, need_w - width)), (0, 0)))
    x = x.reshape(b, need_h // factor, factor, need_w // factor, factor, c).transpose(0, 1, 3, 2, 4, 5)
    y = inner(x.reshape(b, need_h // factor, need_w // factor, factor * factor * c), blocked)
    y = y.reshape(b, rows, cols, phases, phases, out).transpose(0, 1, 3, 2, 4, 5)
    y = y.reshape(b, rows * phases, cols * phases, out)
    return y[:, :(height - k) // stride + 1, :(width - k) // stride + 1]


# Nearest x2 upsampling then a reflection-padded 3x3 convolution: output row 2p + a reads the input
# rows p - 1 + a and p + a (edge-padded) with the kernel rows summed as below ([a, tap, kernel row]).
_UPSAMPLE_TAPS = np.array([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]], np.float32)


def conv_upsampled(x: jax.Array, kernel: jax.Array, *, inner=conv_direct) -> jax.Array:
    """x [B, h, w, I] upsampled x2 (nearest), reflection-padded by 1 and convolved with kernel
    [3, 3, I, O] -> [B, 2h, 2w, O], computed on the small grid: each of the four output phases is a
    2x2 convolution (``inner``) of x edge-padded by 1, with kernel taps summed (2.25x fewer
    multiplications than the 3x3 on the upsampled image; Odena et al. 2016's resize-convolution)."""
    b, h, w, _ = x.shape
    out = kernel.shape[3]
    taps = jnp.asarray(_UPSAMPLE_TAPS, kernel.dtype)
    phased = jnp.einsum("ari,bsj,ijco->abrsco", taps, taps, kernel, precision=jax.lax.Precision.HIGHEST)
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    y = jnp.stack([inner(x[:, a:a + h + 1, c:c + w + 1], phased[a, c]) for a in range(2) for c in range(2)], axis=3)
    return y.reshape(b, h, w, 2, 2, out).transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, out)


def upsample(x: jax.Array) -> jax.Array:
    """Nearest-neighbour x2 upsampling of x [B, H, W, C]."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class Conv(nn.Module):
    """A reflection-padded convolution ("same" size, halved at stride 2 on an even size, or after a
    nearest x2 ``upsample``) with the parameters of ``nn.Conv``: ``kernel`` [k, k, I, O] (and
    ``bias`` [O]), float32, computed in ``dtype`` by the formulation ``conv`` ("auto", "direct" or
    "matmul": :func:`conv_formulation`)."""

    features: int
    kernel_size: int
    stride: int = 1
    upsample: bool = False
    use_bias: bool = False
    dtype: jnp.dtype = jnp.float32
    conv: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32) if self.use_bias else None
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        if conv_formulation(self.conv, jax.default_backend()) == "matmul":
            y = _matmul_conv(x, kernel, self.stride, self.upsample)
        else:
            x = upsample(x) if self.upsample else x
            y = conv_direct(reflect_pad(x, (k // 2, k // 2), (k // 2, k // 2)), kernel, self.stride)
        return y if bias is None else y + bias


def conv_formulation(mode: str, platform: str) -> str:
    """The formulation ``conv=mode`` runs on ``platform``: "auto" is "matmul" on CPU and "direct"
    elsewhere (cuDNN's convolutions are good; the products' intermediates would cost memory)."""
    if mode not in CONV_MODES:
        raise ValueError(f"expected conv in {CONV_MODES}, got {mode!r}")
    return ("matmul" if platform == "cpu" else "direct") if mode == "auto" else mode


def _matmul_conv(x: jax.Array, kernel: jax.Array, stride: int, upsampled: bool) -> jax.Array:
    """The "matmul" formulation of each layer (measured, see the module docstring)."""
    k, _, inputs, out = kernel.shape
    if upsampled:
        return conv_upsampled(x, kernel)
    x = reflect_pad(x, (k // 2, k // 2), (k // 2, k // 2))
    if stride == 1 and k == 3:
        return conv_matmul(x, kernel)
    if stride == 1 and inputs <= out:
        return conv_space_to_depth(x, kernel, factor=2, inner=conv_matmul)
    if stride == 1:
        return conv_space_to_depth(x, kernel, factor=4, inner=conv_matmul)
    return conv_direct(x, kernel, stride)


class ResidualBlock(nn.Module):
    """x + norm(conv(relu(norm(conv(x))))), 3x3 convolutions keeping the channel count."""

    styles: int = 1
    dtype: jnp.dtype = jnp.float32
    conv: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, mix: jax.Array) -> jax.Array:
        features = x.shape[-1]
        h = Conv(features, 3, dtype=self.dtype, conv=self.conv, name="conv_a")(x)
        h = nn.relu(ConditionalInstanceNorm(self.styles, name="norm_a")(h, mix))
        h = Conv(features, 3, dtype=self.dtype, conv=self.conv, name="conv_b")(h)
        return x + ConditionalInstanceNorm(self.styles, name="norm_b")(h, mix)


class TransformerNet(nn.Module):
    """Johnson et al.'s network with conditional instance norm (see the module docstring).

    ``width`` channels after the first convolution, ``2 * width`` and ``4 * width`` after the two
    downsamplings; ``styles`` scale/shift pairs per normalisation; ``residual_blocks`` blocks at
    ``4 * width`` channels; ``dtype`` the convolutions' compute dtype (parameters are float32,
    normalisation statistics and the output float32); ``conv`` how the convolutions are computed,
    "auto" (default: "matmul" on CPU, "direct" elsewhere), "direct" or "matmul" — the same function
    and the same parameters either way (see the module docstring).

    Fully convolutional: any H, W >= 1. The input is padded (reflection, or the edge where the
    image is too small to reflect) to a multiple of 4 and the output cropped back to H x W.
    """

    width: int = 32
    styles: int = 1
    residual_blocks: int = 5
    dtype: jnp.dtype = jnp.float32
    conv: str = "auto"

    @nn.compact
    def __call__(self, x: ArrayLike, mix: ArrayLike) -> jax.Array:
        """x float32 [B, H, W, 3] in [0, 1]; mix float32 [B, styles], each row the style weights of
        its image (summing to 1: one-hot picks one style, a convex mix interpolates) -> float32
        [B, H, W, 3], always in [0, 1] (a sigmoid)."""
        if self.width < 1 or self.styles < 1 or self.residual_blocks < 0:
            raise ValueError(f"expected width >= 1, styles >= 1 and residual_blocks >= 0, got width={self.width}, "
                             f"styles={self.styles}, residual_blocks={self.residual_blocks}")
        if self.conv not in CONV_MODES:
            raise ValueError(f"expected conv in {CONV_MODES}, got {self.conv!r}")
        x, mix = jnp.asarray(x), jnp.asarray(mix)
        if x.ndim != 4 or x.shape[-1] != 3 or min(x.shape[1:3]) < 1:
            raise ValueError(f"expected x of shape [B, H, W, 3] with H, W >= 1, got {tuple(x.shape)}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"expected x of a float dtype in [0, 1], got {x.dtype}")
        if mix.shape != (x.shape[0], self.styles):
            raise ValueError(f"expected mix of shape [B, styles] = [{x.shape[0]}, {self.styles}], "
                             f"got {tuple(mix.shape)}")
        height, width = x.shape[1:3]
        mix = mix.astype(jnp.float32)
        h = reflect_pad(x.astype(self.dtype), (0, -height % MULTIPLE), (0, -width % MULTIPLE))

        def stage(h, features, kernel, name, **how):
            h = Conv(features, kernel, dtype=self.dtype, conv=self.conv, name=name, **how)(h)
            return nn.relu(ConditionalInstanceNorm(self.styles, name=f"{name}_norm")(h, mix))

        h = stage(h, self.width, 9, "conv_in")
        h = stage(h, 2 * self.width, 3, "down_1", stride=2)
        h = stage(h, 4 * self.width, 3, "down_2", stride=2)
        for i in range(self.residual_blocks):
            h = ResidualBlock(self.styles, self.dtype, self.conv, name=f"residual_{i}")(h, mix)
        for i, features in enumerate((2 * self.width, self.width), start=1):
            h = stage(h, features, 3, f"up_{i}", upsample=True)  # nearest-neighbour x2, then the conv
        h = Conv(3, 9, use_bias=True, dtype=self.dtype, conv=self.conv, name="conv_out")(h)
        return jax.nn.sigmoid(h.astype(jnp.float32))[:, :height, :width, :]


def init_network(key: jax.Array, net: TransformerNet, size: int = 64) -> dict:
    """Fresh float32 parameters of ``net``: kernels LeCun normal (normal truncated at two standard
    deviations, variance 1 / fan-in: ``nn.Conv``'s default), biases and shifts 0, scales 1. The
    shapes come from tracing ``net`` on one ``size`` x ``size`` image (they do not depend on it).

    The values are drawn at once rather than by ``net.init``, whose per-parameter keys take XLA
    seconds to compile for every network shape."""
    if size < 1:
        raise ValueError(f"expected size >= 1, got {size}")
    image = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    shapes = jax.eval_shape(net.init, key, image, jax.ShapeDtypeStruct((1, net.styles), jnp.float32))["params"]
    leaves, tree = jax.tree_util.tree_flatten_with_path(shapes)
    kernels = [math.prod(leaf.shape) for path, leaf in leaves if path[-1].key == "kernel"]
    draws = jax.random.truncated_normal(key, -2.0, 2.0, (sum(kernels),), jnp.float32)
    stddev = 0.87962566103423978  # the standard deviation of a unit normal truncated at +-2
    values, start = [], 0
    for path, leaf in leaves:
        name = path[-1].key
        if name == "kernel":
            count, fan_in = math.prod(leaf.shape), math.prod(leaf.shape[:-1])
            values.append((draws[start:start + count] / (stddev * math.sqrt(fan_in))).reshape(leaf.shape))
            start += count
        else:
            values.append(jnp.full(leaf.shape, 1.0 if name == "gamma" else 0.0, jnp.float32))
    return jax.tree_util.tree_unflatten(tree, values)


def parameter_count(params) -> int:
    """The number of scalars in a parameter pytree (arrays or shapes: ``jax.eval_shape``'s)."""
    return sum(math.prod(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(params))
