"""Style statistics beyond the Gram matrix: feature moments and the Wasserstein-2 style loss.

Each style layer's features are summarised by a Gaussian, ``N(mu, Sigma)``, and the loss is the
squared Wasserstein-2 distance between the iterate's Gaussian and the target's (Dowson & Landau
1982; used for style transfer by Crowson's style-transfer-pytorch, ``StyleLossW2``, and by
Mroueh 2019, "Wasserstein Style Transfer")::

    W2^2 = |mu - mu_s|^2 + tr(Sigma + Sigma_s - 2 (Sigma_s^1/2 Sigma Sigma_s^1/2)^1/2)

All per-image functions take one image's features [h, w, C] (no batch axis; batch with
``jax.vmap``) and accumulate in float32 (float64 under x64), also for bfloat16 features.

* **Sums, then moments.** :func:`moment_sums` returns the weighted sums over pixels
  ``(sum w, sum w (f - c), sum w (f - c)(f - c)^T)`` about a constant centre ``c``; sums of
  disjoint pixel sets (blocks) add exactly (:func:`add_sums`), and :func:`mean_and_cov` turns the
  total into (mean, covariance). Centring on the target's mean keeps the covariance free of the
  cancellation ``E[f f^T] - mu mu^T`` suffers in float32 when |mu| >> std (VGG ReLU features).
* **Targets blend linearly as (mean, raw second moment)** (:class:`Moments`): the raw moments of
  a mixture are the weighted means of its parts' raw moments (covariances are not), so
  :func:`blend_moments` with pixel-share weights gives exactly the moments of the pooled pixels.
* **Normalisation.** :func:`w2_distance` returns ``W2^2 / C``: both terms divided by the
  channel count, as Crowson does (``mean`` over channels of the mean term, ``trace / C``). W2 is a
  distance between distributions, so it does not depend on the image size; dividing by C makes
  it a per-channel squared distance, comparable across layers of different widths.
* **Ridge.** ``Sigma`` and ``Sigma_s`` both get ``+ ridge I`` (Crowson: ``eps = 1e-4`` absolute).
  Here ``ridge = eps * max(tr(Sigma_s) / C, RIDGE_FLOOR)`` by default (relative to the target's mean
  variance; the floor keeps a style with no variance at a layer, a flat colour or a layer of one
  pixel, from a zero matrix whose square root has no gradient), so
  the conditioning does not depend on the network's activation scale (Caffe weights see
  0-255 input, PyTorch ones 0-1 standardised: activations differ by roughly 50x, covariances 2500x).
* **Square roots.** The target's ``Sigma_s^1/2`` is computed once by ``eigh`` (negative
  eigenvalues clipped to 0). The iterate's ``(S Sigma S)^1/2`` is computed every step by coupled
  Newton-Schulz iterations (Higham 2008, "Functions of Matrices", ch. 6; matrix products
  only) on the matrix divided by its Frobenius norm, in at least float32 with
  ``Precision.HIGHEST`` (never TF32 or bfloat16 passes). Its custom backward solves the Sylvester
  equation ``Z X + X Z = G`` (Z the square root, G the cotangent) by the Newton-Schulz sign
  iteration of ``[[Z, -G], [0, -Z]]`` (Lin & Maji 2017, "Improved Bilinear Pooling with CNNs";
  Crowson's ``sqrtm_ns_lyap``), again matrix products only; ``backward="unrolled"`` differentiates
  the iterations themselves instead (the exact derivative of the value computed, for line
  searches, at O(iterations C^2) memory). The loss needs only the root's *trace*, whose gradient
  ``(S Sigma S)^-1/2 / 2`` the same iterations give (their Z): :func:`trace_sqrtm`, the default
  (``backward="trace"``), with no backward iterations (W2's value and gradient at 256 px on a
  2-core CPU fell from 4.2x Gram's to 1.5x). 16 iterations by default (Crowson: 12); see
  :func:`sqrtm_newton_schulz` for why the count is bounded in float32. Not ``eigh`` every step:
  a dense eigensolver is far slower on accelerators than ~50 [C, C] products.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

# Crowson's style layer weights (relu1_1 .. relu5_1), normalised to sum to 1 as there.
CROWSON_LAYER_WEIGHTS = tuple(w / 341.0 for w in (256.0, 64.0, 16.0, 4.0, 1.0))
NS_ITERATIONS = 16  # see sqrtm_newton_schulz
_HIGHEST = jax.lax.Precision.HIGHEST


RIDGE_FLOOR = 1e-6  # mean variance below which the ridge stops shrinking (features' units squared)


class MomentSums(NamedTuple):
    """Weighted sums over pixels about ``center`` (see :func:`moment_sums`)."""

    weight: jax.Array  # [] sum of pixel weights
    first: jax.Array  # [C] sum w (f - c)
    second: jax.Array  # [C, C] sum w (f - c)(f - c)^T
    center: jax.Array  # [C] c (not summed: every part of one total must use the same centre)


class Moments(NamedTuple):
    """Mean [C] and raw second moment ``E[f f^T]`` [C, C]: the form in which targets blend linearly."""

    mean: jax.Array
    second: jax.Array


class W2Target(NamedTuple):
    """A layer's W2 target: mean [C], covariance with ridge [C, C], its square root [C, C], ridge []."""

    mean: jax.Array
    cov: jax.Array
    cov_sqrt: jax.Array
    ridge: jax.Array


def _acc(dtype) -> jnp.dtype:
    """float32 for bfloat16/float16/float32, float64 for float64 (under x64)."""
    return jnp.promote_types(dtype, jnp.float32)


def _sym(a: jax.Array) -> jax.Array:
    return 0.5 * (a + jnp.swapaxes(a, -1, -2))


def _mm(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.matmul(a, b, precision=_HIGHEST)


# ----------------------------------------------------------------------------- moments


@jax.custom_vjp
def _weighted_second(flat: jax.Array, weight: jax.Array) -> jax.Array:
    """[M, C], [M] -> [C, C], ``sum_m w_m f_m f_m^T``. Custom VJP: one [M, C] x [C, C] product for
    the features' gradient, ``w * F (g + g^T)``, where autodiff makes two (as losses._gram)."""
    return jnp.einsum("mi,mj->ij", flat * weight[:, None].astype(flat.dtype), flat,
                      preferred_element_type=_acc(flat.dtype))


def _weighted_second_fwd(flat, weight):
    return _weighted_second(flat, weight), (flat, weight)


def _weighted_second_bwd(res, g):
    flat, weight = res
    acc = _acc(flat.dtype)
    fg = jnp.matmul(flat, (g + g.T).astype(flat.dtype), preferred_element_type=acc)
    d_flat = (fg * weight[:, None].astype(acc)).astype(flat.dtype)
    # The weights' cotangent (masks are constants in practice: unused, and removed by XLA then).
    d_weight = 0.5 * jnp.sum(fg * flat.astype(acc), axis=1)
    return d_flat, d_weight.astype(weight.dtype)


_weighted_second.defvjp(_weighted_second_fwd, _weighted_second_bwd)


@jax.jit
def moment_sums(features: ArrayLike, mask: ArrayLike | None = None, center: ArrayLike | None = None) -> MomentSums:
    """Weighted sums over the pixels of features [h, w, C] (any float dtype) under ``mask`` [h, w]
    (pixel weights >= 0; default all ones) about ``center`` [C] (default 0; a constant, e.g. the
    target's mean): ``MomentSums(sum w, sum w (f - c), sum w (f - c)(f - c)^T, c)`` accumulated in at
    least float32. The centre is rounded to the features' dtype first (``center`` holds the value
    used), and the weights too, so that the weight total, first and second sums are consistent.

    The sums of disjoint pixel sets add (:func:`add_sums`): evaluation by blocks is exact."""
    f = jnp.asarray(features)
    h, w, c = f.shape
    acc = _acc(f.dtype)
    centre = jnp.zeros((c,), f.dtype) if center is None else jnp.asarray(center).astype(f.dtype)
    flat = f.reshape(h * w, c) - centre
    m = jnp.ones((h * w,), acc) if mask is None else jnp.asarray(mask).reshape(h * w).astype(f.dtype).astype(acc)
    first = jnp.einsum("m,mi->i", m, flat.astype(acc))
    return MomentSums(jnp.sum(m), first, _weighted_second(flat, m), centre.astype(acc))


def add_sums(*sums: MomentSums) -> MomentSums:
    """The sums of the union of disjoint pixel sets; all must share one centre (the first's is kept)."""
    if not sums:
        raise ValueError("expected at least one MomentSums, got none")
    total = sums[0]
    for s in sums[1:]:
        total = MomentSums(total.weight + s.weight, total.first + s.first, total.second + s.second, total.center)
    return total


def mean_and_cov(sums: MomentSums, min_weight: float = 1e-6) -> tuple[jax.Array, jax.Array]:
    """(mean [C], covariance [C, C]) of the weighted pixels, ``cov = S2 / W - d d^T`` with
    ``d = S1 / W`` about the centre (small when the centre is near the mean). An empty region
    (``W < min_weight``) gives mean = centre, covariance 0."""
    total = jnp.maximum(sums.weight, min_weight)
    d = sums.first / total
    return sums.center + d, _sym(sums.second / total - jnp.outer(d, d))


def moments_from_sums(sums: MomentSums, min_weight: float = 1e-6) -> Moments:
    """Raw :class:`Moments` (about 0) from sums about any centre: ``E[f f^T] = cov + mu mu^T``."""
    mean, cov = mean_and_cov(sums, min_weight)
    return Moments(mean, cov + jnp.outer(mean, mean))


@jax.jit
def moments(features: ArrayLike, mask: ArrayLike | None = None) -> Moments:
    """Mean [C] and raw second moment [C, C] of features [h, w, C] (weighted by ``mask`` [h, w],
    e.g. a style image's own mask), accumulated in at least float32. Centred on the unweighted
    per-channel mean internally, so the covariance recovered later loses no precision here."""
    f = jnp.asarray(features)
    centre = jax.lax.stop_gradient(jnp.mean(f.astype(_acc(f.dtype)), axis=(0, 1)))
    return moments_from_sums(moment_sums(f, mask, centre))


def blend_moments(parts: Sequence[Moments], weights: ArrayLike) -> Moments:
    """``sum_s w_s m_s / sum_s w_s`` of several styles' :class:`Moments` (Crowson: weights normalised
    to sum 1, then mean and raw second moment added). Weights proportional to pixel counts give
    the moments of all the styles' pixels pooled. ValueError for negative or all-zero weights."""
    if len(parts) == 0:
        raise ValueError("expected at least one style's moments to blend, got none")
    if not isinstance(weights, jax.core.Tracer):
        w = np.asarray(weights, np.float64)
        if w.shape != (len(parts),):
            raise ValueError(f"expected {len(parts)} blend weights, got shape {w.shape}")
        if np.any(w < 0) or not np.sum(w) > 0:
            raise ValueError(f"expected non-negative blend weights with a positive sum, got {w.tolist()}")
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *parts)
    w = jnp.asarray(weights, stacked.mean.dtype)
    w = w / jnp.sum(w)
    return Moments(jnp.tensordot(w, stacked.mean, 1), jnp.tensordot(w, stacked.second, 1))


# ----------------------------------------------------------------------------- square roots


def sqrtm_eigh(a: ArrayLike) -> jax.Array:
    """Principal square root of a symmetric PSD matrix [C, C] by ``eigh``, eigenvalues clipped at 0,
    in at least float32. No gradient (``stop_gradient``): for targets, computed once."""
    a = jnp.asarray(a)
    a = jax.lax.stop_gradient(_sym(a.astype(_acc(a.dtype))))
    vals, vecs = jnp.linalg.eigh(a)
    return _sym(_mm(vecs * jnp.sqrt(jnp.maximum(vals, 0.0)), vecs.T))


def _ns_pair(a: jax.Array, iterations: int) -> tuple[jax.Array, jax.Array]:
    """(Y, Z) of the coupled iteration rescaled to ``A``: Y ~ A^1/2, Z ~ A^-1/2 (each as converged)."""
    norm = jnp.maximum(jnp.sqrt(jnp.sum(a * a)), jnp.finfo(a.dtype).tiny)
    eye3 = 3.0 * jnp.eye(a.shape[-1], dtype=a.dtype)

    def step(_, yz):
        y, z = yz
        t = 0.5 * (eye3 - _mm(z, y))
        return _mm(y, t), _mm(t, z)

    y, z = jax.lax.fori_loop(0, iterations, step, (a / norm, jnp.eye(a.shape[-1], dtype=a.dtype)))
    return _sym(y) * jnp.sqrt(norm), _sym(z) / jnp.sqrt(norm)


def _ns_sqrt(a: jax.Array, iterations: int) -> jax.Array:
    return _ns_pair(a, iterations)[0]


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def _trace_sqrtm(a: jax.Array, iterations: int) -> jax.Array:
    return jnp.trace(_ns_pair(a, iterations)[0])


def _trace_sqrtm_fwd(a, iterations):
    y, z = _ns_pair(a, iterations)
    return jnp.trace(y), z


def _trace_sqrtm_bwd(iterations, z, g):
    return (0.5 * g * z,)  # d tr(A^1/2) / dA = A^-1/2 / 2, and the iteration's Z is A^-1/2


_trace_sqrtm.defvjp(_trace_sqrtm_fwd, _trace_sqrtm_bwd)


def trace_sqrtm(a: ArrayLike, iterations: int = NS_ITERATIONS) -> jax.Array:
    """``tr(A^1/2)`` of a symmetric PSD matrix [C, C] by the iterations of :func:`sqrtm_newton_schulz`,
    whose gradient ``A^-1/2 / 2`` is the iteration's other half, Z: no backward iterations at all
    (the Lyapunov backward of the full root costs ~5 [C, C] products per iteration, the forward 3).
    Where an eigenvalue is too small to have converged its Z is damped, so the gradient stays finite."""
    a = jnp.asarray(a)
    return _trace_sqrtm(a.astype(_acc(a.dtype)), int(iterations))


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def _sqrtm_ns(a: jax.Array, iterations: int) -> jax.Array:
    return _ns_sqrt(a, iterations)


def _sqrtm_ns_fwd(a, iterations):
    z = _ns_sqrt(a, iterations)
    return z, z


def _sqrtm_ns_bwd(iterations, z, g):
    # sign([[B, C], [0, -B]]) = [[I, 2X], [0, -I]] for B X + X B = C; Newton-Schulz on the blocks:
    # B <- B (3I - B^2) / 2, C <- (C (3I - B^2) - B (B C - C B)) / 2, from B = Z/|Z|, C = G/|Z|.
    norm = jnp.maximum(jnp.sqrt(jnp.sum(z * z)), jnp.finfo(z.dtype).tiny)
    eye3 = 3.0 * jnp.eye(z.shape[-1], dtype=z.dtype)

    def step(_, bc):
        b, c = bc
        e = eye3 - _mm(b, b)
        return 0.5 * _mm(b, e), 0.5 * (_mm(c, e) - _mm(b, _mm(b, c) - _mm(c, b)))

    _, c = jax.lax.fori_loop(0, iterations, step, (z / norm, g.astype(z.dtype) / norm))
    return (0.5 * c,)


_sqrtm_ns.defvjp(_sqrtm_ns_fwd, _sqrtm_ns_bwd)
BACKWARDS = ("lyapunov", "unrolled")
W2_BACKWARDS = ("trace", *BACKWARDS)  # trace: trace_sqrtm (the default); else sqrtm_newton_schulz's backward


def sqrtm_newton_schulz(a: ArrayLike, iterations: int = NS_ITERATIONS, backward: str = "lyapunov") -> jax.Array:
    """Square root of a symmetric positive semi-definite matrix [C, C] by coupled Newton-Schulz
    iterations (``Y <- Y T, Z <- T Z, T = (3I - Z Y) / 2`` from ``Y = A / |A|_F, Z = I``), in at least
    float32 (bfloat16 input is upcast), matrix products at ``Precision.HIGHEST``.

    ``backward="lyapunov"`` (Crowson's): a custom VJP that solves ``Z X + X Z = G`` by as many
    Newton-Schulz sign steps, memory O(C^2); it is the derivative of the exact square root at Z, so
    it matches the derivative of the computed value only where the forward iteration converged.
    ``backward="unrolled"``: reverse-mode through the iterations (memory O(iterations C^2)), the
    exact derivative of the value computed, whatever the convergence (for line searches).

    Convergence: an eigenvalue ``p`` of ``A / |A|_F`` grows like ``2.25^k p`` until it nears 1, so
    ``k`` iterations resolve eigenvalues down to about ``2.25^-k |A|_F`` (k=16: 2e-6); smaller ones
    get an underestimated root (and a damped, finite gradient). The count must stay bounded in
    float32: rounding leaves eigenvalues of size ``~1e-7 |A|_F`` of either sign, and a negative one
    also grows like ``2.25^k``, diverging once it reaches O(1) (seen from k=24 at C=256). 12-20 is
    the useful range (Crowson: 12); tests/objective/test_statistics.py measures the accuracy."""
    if backward not in BACKWARDS:
        raise ValueError(f"expected backward in {BACKWARDS}, got {backward!r}")
    a = jnp.asarray(a)
    a = a.astype(_acc(a.dtype))
    return _sqrtm_ns(a, int(iterations)) if backward == "lyapunov" else _ns_sqrt(a, int(iterations))


# ----------------------------------------------------------------------------- W2 loss


@partial(jax.jit, static_argnames=("relative",))
def w2_target(target: Moments, eps: float = 1e-4, relative: bool = True) -> W2Target:
    """A layer's W2 target from (blended) :class:`Moments`, computed once: covariance
    ``E[f f^T] - mu mu^T + ridge I`` and its square root by ``eigh`` (no gradient), with
    ``ridge = eps * max(tr(cov) / C, RIDGE_FLOOR)`` (``relative``; Crowson: ``eps = 1e-4`` absolute). The same
    ridge is added to the iterate's covariance by :func:`w2_distance`."""
    mean = jax.lax.stop_gradient(jnp.asarray(target.mean))
    second = jax.lax.stop_gradient(jnp.asarray(target.second))
    acc = _acc(second.dtype)
    mean, second = mean.astype(acc), second.astype(acc)
    c = mean.shape[-1]
    cov = _sym(second - jnp.outer(mean, mean))
    ridge = jnp.asarray(eps, acc) * (jnp.maximum(jnp.trace(cov) / c, RIDGE_FLOOR) if relative else 1.0)
    cov = cov + ridge * jnp.eye(c, dtype=acc)
    return W2Target(mean, cov, sqrtm_eigh(cov), ridge)


def w2_distance(mean: jax.Array, cov: jax.Array, target: W2Target, iterations: int = NS_ITERATIONS,
                backward: str = "trace") -> jax.Array:
    """``W2^2 / C`` between ``N(mean, cov + ridge I)`` (the iterate's [C], [C, C]) and the target's
    Gaussian: ``(|mu - mu_s|^2 + tr(Sigma + Sigma_s - 2 (S Sigma S)^1/2)) / C``, ``S = Sigma_s^1/2``."""
    acc = _acc(cov.dtype)
    c = mean.shape[-1]
    cov = _sym(cov.astype(acc)) + target.ridge.astype(acc) * jnp.eye(c, dtype=acc)
    s = target.cov_sqrt.astype(acc)
    inner = _sym(_mm(_mm(s, cov), s))
    if backward == "trace":
        root_trace = trace_sqrtm(inner, iterations)
    elif backward in BACKWARDS:
        root_trace = jnp.trace(sqrtm_newton_schulz(inner, iterations, backward))
    else:
        raise ValueError(f"expected backward in {W2_BACKWARDS}, got {backward!r}")
    diff = mean.astype(acc) - target.mean.astype(acc)
    cov_term = jnp.trace(cov) + jnp.trace(target.cov.astype(acc)) - 2.0 * root_trace
    return (jnp.sum(diff * diff) + cov_term) / c


def w2_loss_from_sums(sums: MomentSums, target: W2Target, iterations: int = NS_ITERATIONS,
                      backward: str = "trace") -> jax.Array:
    """:func:`w2_distance` of the pixels summed in ``sums`` (e.g. the total over blocks; sum them
    about ``target.mean`` for precision). ``jax.grad`` of this with respect to ``sums`` gives the
    cotangent each block pulls back through its own :func:`moment_sums` (exact by blocks).

    ``S2 / W - d d^T`` is exact to about ``eps |d|^2`` in the accumulation dtype (``d`` the mean's
    distance from the centre): that much is added to the diagonal, with the gradient stopped, so a
    covariance that rounding made slightly indefinite (a flat iterate far from the target's mean)
    keeps a real square root; it is below the ridge unless the iterate has almost no variance."""
    mean, cov = mean_and_cov(sums)
    d = jax.lax.stop_gradient(mean - sums.center)
    slack = 8.0 * jnp.finfo(cov.dtype).eps * jnp.sum(d * d)
    return w2_distance(mean, cov + slack * jnp.eye(cov.shape[-1], dtype=cov.dtype), target, iterations, backward)


@partial(jax.jit, static_argnames=("iterations", "backward"))
def w2_style_loss(features: ArrayLike, target: W2Target, mask: ArrayLike | None = None,
                  iterations: int = NS_ITERATIONS, backward: str = "trace") -> jax.Array:
    """W2 style loss (``W2^2 / C``) of one layer's features [h, w, C] against ``target``; with
    ``mask`` [h, w], of that soft region's statistics only (sums centred on the target's mean)."""
    return w2_loss_from_sums(moment_sums(features, mask, target.mean), target, iterations, backward)


@partial(jax.jit, static_argnames=("iterations", "backward"))
def masked_w2_style_loss(features: ArrayLike, masks: ArrayLike, targets: W2Target,
                         iterations: int = NS_ITERATIONS, backward: str = "trace") -> jax.Array:
    """``sum_r mean(m_r) * W2_r^2 / C`` over regions r (Gatys et al. 2017 spatial control, as
    losses.masked_style_layer_loss): features [h, w, C], masks [R, h, w] summing to 1 at each
    pixel, targets a :class:`W2Target` with a leading region axis R. One all-ones region equals
    :func:`w2_style_loss`; an empty region contributes 0."""
    masks = jnp.asarray(masks)
    if masks.ndim != 3 or targets.mean.shape[0] != masks.shape[0]:
        raise ValueError(f"expected masks [R, h, w] and targets with R={masks.shape[0]} regions, "
                         f"got masks {masks.shape} and target means {targets.mean.shape}")
    losses = jax.vmap(lambda m, t: w2_style_loss(features, t, m, iterations, backward))(masks, targets)
    shares = jnp.mean(masks.astype(losses.dtype), axis=(1, 2))
    return jnp.sum(shares * losses)
