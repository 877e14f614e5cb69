"""Winograd minimal filtering F(4x4, 3x3) for VGG's 3x3, stride-1, zero-padded convolutions.

Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural Networks": an output tile of 4x4
from an input tile of 6x6 costs 36 multiplications per (input channel, output channel) instead
of 144, i.e. 4x fewer. With the interpolation points 0, +-1, +-2 (and infinity)::

    Y = A^T [ (G g G^T) * (B^T d B) ] A        (* elementwise; g the 3x3 kernel, d a 6x6 tile)

Here the transforms are written so that every pass is a dense matrix product XLA runs well:

* input: the 6x6 tiles ``x[4t + i, 4s + j]`` (i, j < 6) are cut from 4x4 blocks with reshapes
  and concatenations, and one product with ``B^T (x) B^T`` (the Kronecker product, [36, 36])
  gives all 36 transformed planes;
* the 36 planes [T, I] times the transformed kernels [36, I, O]: one batched ``dot_general``,
  the 36 points as its batch dimension (4x fewer multiplications than the direct convolution);
* output: one product with ``A^T (x) A^T`` ([16, 36]) and a transpose that interleaves the 4x4
  tiles back into the image.

(A first version with separable 6-tap passes over strided slices measured 2-3x slower on
XLA:CPU than this: the separable passes did fewer operations but XLA fused them poorly.)
Sizes that are not multiples of 4 are padded with zeros and cropped. Results match
``lax.conv_general_dilated`` to about 2e-5 relative in float32 (the transforms' coefficients
reach 8 and 1/24); see ``tests/test_winograd.py``. Style transfer needs only the gradient with
respect to the image, and it is the same kind of convolution, with the kernel flipped and its
channels swapped: :func:`winograd_conv3x3` uses Winograd for both. The kernel gradient is exact
too, computed in the Winograd domain (:func:`_kernel_cotangent`), and XLA drops it when only the
image gradient is used.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

BT = np.array([[4, 0, -5, 0, 1, 0],
               [0, -4, -4, 1, 1, 0],
               [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0],
               [0, 2, -1, -2, 1, 0],
               [0, 4, 0, -5, 0, 1]], np.float64)
G = np.array([[1 / 4, 0, 0],
              [-1 / 6, -1 / 6, -1 / 6],
              [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6],
              [0, 0, 1]], np.float64)
AT = np.array([[1, 1, 1, 1, 1, 0],
               [0, 1, -1, 2, -2, 0],
               [0, 1, 1, 4, 4, 0],
               [0, 1, -1, 8, -8, 1]], np.float64)
INPUT_TRANSFORM = np.kron(BT, BT)  # [36, 36]: row a*6+b acts on the tile flattened as i*6+j
OUTPUT_TRANSFORM = np.kron(AT, AT)  # [16, 36]


def transform_kernel(kernel: jax.Array) -> jax.Array:
    """[3, 3, I, O] -> [36, I, O]: G g G^T for every (input, output) channel pair (one product
    with G (x) G: a dense matmul, 6x faster on XLA:CPU than the equivalent einsum)."""
    flat = jnp.tensordot(jnp.asarray(np.kron(G, G), kernel.dtype), kernel.reshape(9, -1), 1)
    return flat.reshape(36, *kernel.shape[2:])


def transform_kernels(kernel: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The transformed kernels of a layer: for the forward pass [36, I, O] and for the input
    gradient (the kernel flipped, channels swapped) [36, O, I]. Computed once per run, outside the
    optimisation loop (XLA does not hoist size-increasing ops out of loops by itself)."""
    return transform_kernel(kernel), transform_kernel(jnp.flip(kernel, (0, 1)).swapaxes(2, 3))


def _tiles(x: jax.Array, th: int, tw: int) -> jax.Array:
    """The overlapping 6x6 input tiles (stride 4) of x [B, H, W, C], zero-padded for SAME:
    [36, B * th * tw * C], row ``i * 6 + j`` holding the tiles' element (i, j).

    Built from 4x4 blocks: tile t's rows are block t's four and block t+1's first two, so two
    reshapes and two concatenations give all of them (36 strided slices, stacked, gave the same
    numbers and compiled 3x slower; single layers ran 15-30% slower, the whole network the same)."""
    b, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 4 * th + 3 - h), (1, 4 * tw + 3 - w), (0, 0)))  # [B, 4 th + 4, 4 tw + 4, C]
    rows = xp.reshape(b, th + 1, 4, 4 * tw + 4, c)
    rows = jnp.concatenate([rows[:, :th], rows[:, 1:, :2]], axis=2)  # [B, th, 6, 4 tw + 4, C]
    cols = rows.reshape(b, th, 6, tw + 1, 4, c)
    cols = jnp.concatenate([cols[:, :, :, :tw], cols[:, :, :, 1:, :2]], axis=4)  # [B, th, 6, tw, 6, C]
    return cols.transpose(2, 4, 0, 1, 3, 5).reshape(36, -1)


def winograd_conv(x: jax.Array, transformed: jax.Array) -> jax.Array:
    """3x3 SAME cross-correlation of x [B, H, W, I] with a kernel given as ``transform_kernel(k)``
    [36, I, O]; returns [B, H, W, O] (equal to ``lax.conv_general_dilated(x, k, (1, 1), "SAME")``)."""
    b, h, w, c = x.shape
    out = transformed.shape[-1]
    th, tw = -(-h // 4), -(-w // 4)  # tiles per column and row
    planes = jnp.tensordot(jnp.asarray(INPUT_TRANSFORM, x.dtype), _tiles(x, th, tw), 1)
    products = jax.lax.dot_general(planes.reshape(36, b * th * tw, c), transformed,
                                   (((2,), (1,)), ((0,), (0,))))  # [36, tiles, O]
    y = jnp.tensordot(jnp.asarray(OUTPUT_TRANSFORM, x.dtype), products.reshape(36, -1), 1)
    y = y.reshape(4, 4, b, th, tw, out).transpose(2, 3, 0, 4, 1, 5).reshape(b, 4 * th, 4 * tw, out)
    return y[:, :h, :w]


def _kernel_cotangent(x: jax.Array, g: jax.Array, transformed: jax.Array) -> jax.Array:
    """The cotangent of ``transformed`` [36, I, O] in ``winograd_conv(x, transformed)`` for the output
    cotangent g [B, H, W, O], computed in the Winograd domain: [36, I, O].

    The forward pass is linear in the kernel: ``M[p] = V[p] U[p]`` for each of the 36 points p (V the
    transformed input tiles [tiles, I], U the kernel [I, O]), then ``A^T (x) A^T`` [16, 36] maps M to
    the 4x4 output tiles, interleaved and cropped. Transposed: the cotangent of M is ``(A^T (x) A^T)^T``
    times g's non-overlapping 4x4 tiles (zero-padded where the forward cropped), and
    ``dU[p] = V[p]^T dM[p]``: one batched product over the 36 points, as costly as the forward one."""
    b, h, w, c = x.shape
    out = g.shape[-1]
    th, tw = -(-h // 4), -(-w // 4)
    planes = jnp.tensordot(jnp.asarray(INPUT_TRANSFORM, x.dtype), _tiles(x, th, tw), 1).reshape(36, -1, c)
    gp = jnp.pad(g, ((0, 0), (0, 4 * th - h), (0, 4 * tw - w), (0, 0)))
    blocks = gp.reshape(b, th, 4, tw, 4, out).transpose(2, 4, 0, 1, 3, 5).reshape(16, -1)  # [16, tiles * O]
    d_products = jnp.tensordot(jnp.asarray(OUTPUT_TRANSFORM.T, g.dtype), blocks, 1).reshape(36, -1, out)
    d_kernel = jax.lax.dot_general(planes, d_products, (((1,), (1,)), ((0,), (0,))))  # [36, I, O]
    return d_kernel.astype(transformed.dtype)


@jax.custom_vjp
def winograd_conv3x3(x: jax.Array, forward: jax.Array, backward: jax.Array) -> jax.Array:
    """3x3 SAME convolution of x [B, H, W, I] from the layer's :func:`transform_kernels`
    (``forward`` [36, I, O], ``backward`` [36, O, I]); the input gradient is the Winograd
    convolution with ``backward``.

    Gradients are the true ones of ``winograd_conv(x, forward)``: ``forward`` gets the full kernel
    cotangent (:func:`_kernel_cotangent`), and ``backward`` gets zero because the value does not
    depend on it (it only serves to compute the input gradient). Both being transforms of the same
    raw kernel, chaining through the linear :func:`transform_kernels` therefore gives exactly
    ``lax.conv``'s kernel gradient."""
    return winograd_conv(x, forward)


def _fwd(x, forward, backward):
    return winograd_conv(x, forward), (x, forward, backward)


def _bwd(residuals, g):
    # When only the image gradient is used (style transfer: the kernels are constants), XLA
    # eliminates _kernel_cotangent as dead code, so that path costs what it did before.
    x, forward, backward = residuals
    return winograd_conv(g, backward), _kernel_cotangent(x, g, forward), jnp.zeros_like(backward)


winograd_conv3x3.defvjp(_fwd, _bwd)


def conv3x3_winograd(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """:func:`jaxstyle.model.vgg.conv3x3` by Winograd, transforming ``kernel`` [3, 3, I, O] on the spot
    (for tests and one-off use; the network's layers take pre-transformed kernels)."""
    return winograd_conv3x3(x, *transform_kernels(kernel))
