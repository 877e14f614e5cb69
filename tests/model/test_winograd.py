"""Winograd F(4x4, 3x3) against lax.conv: values, input and kernel gradients, odd sizes, the whole network."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.model.vgg import CONV_KERNEL_SHAPES, VGG19Features, conv3x3, with_winograd_kernels
from jaxstyle.model.winograd import (
    conv3x3_winograd,
    transform_kernel,
    transform_kernels,
    winograd_conv,
    winograd_conv3x3,
)


def _direct64(x, k):
    return np.asarray(jax.lax.conv_general_dilated(np.float64(x), np.float64(k), (1, 1), "SAME",
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC")))


@pytest.mark.parametrize("shape", [(1, 8, 8, 3, 4), (2, 13, 7, 5, 6), (1, 1, 1, 2, 3), (1, 4, 9, 16, 8)])
def test_values_match_the_direct_convolution(shape):
    b, h, w, i, o = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal((b, h, w, i)).astype(np.float32)
    k = rng.standard_normal((3, 3, i, o)).astype(np.float32)
    ref = _direct64(x, k)  # float64 reference: the test measures Winograd's own float32 error
    out = np.asarray(winograd_conv(jnp.asarray(x), transform_kernel(jnp.asarray(k))))
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()


def test_input_gradient_matches_the_direct_convolution():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 10, 11, 8)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 8, 5)), jnp.float32)
    cot = jnp.asarray(rng.standard_normal((2, 10, 11, 5)), jnp.float32)
    loss = lambda conv: lambda x: jnp.vdot(conv(x, k), cot)  # noqa: E731
    gw, gd = jax.grad(loss(conv3x3_winograd))(x), jax.grad(loss(conv3x3))(x)
    np.testing.assert_allclose(gw, gd, atol=2e-5 * float(jnp.abs(gd).max()))


@pytest.mark.parametrize("scale", ["random", "real"])
def test_every_layer_of_the_network_within_1e4(random_weights, scale):
    """Features of all 16 convolutions (Winograd everywhere but conv1_1) against the direct ones.

    "real": the weights rescaled so that activations have the magnitudes of the ImageNet network on
    a 0-255 Caffe input (the real weights are not in CI)."""
    params = {n: {"kernel": jnp.asarray(k), "bias": jnp.asarray(b)} for n, (k, b) in random_weights.layers.items()}
    x = jnp.asarray(np.random.default_rng(2).uniform(-120, 150, (1, 40, 52, 3)), jnp.float32)
    if scale == "real":
        params = jax.tree.map(lambda a: a * 1.3, params)
    layers = tuple(n.replace("conv", "relu") for n in CONV_KERNEL_SHAPES)
    direct = VGG19Features(layers=layers).apply({"params": params}, x)
    fast_layers = tuple(CONV_KERNEL_SHAPES)[1:]
    fast = VGG19Features(layers=layers, winograd_layers=fast_layers).apply(
        {"params": with_winograd_kernels(params, fast_layers)}, x)
    for name in layers:
        ref = np.asarray(direct[name])
        err = np.abs(np.asarray(fast[name]) - ref).max() / np.abs(ref).max()
        assert err <= 1e-4, f"{name}: relative error {err:.2e}"


def _relative_error(got, want) -> float:
    return float(jnp.abs(got - want).max() / jnp.abs(want).max())


@pytest.mark.parametrize("shape", [(2, 10, 11, 8, 5), (1, 1, 1, 2, 3), (1, 8, 8, 3, 4), (2, 13, 7, 5, 6)])
def test_kernel_gradient_matches_the_direct_convolution(shape):
    """The raw kernel's gradient through transform_kernels and the Winograd layer equals lax.conv's; the
    transformed kernels get the true cotangents (forward: that of winograd_conv, backward: zero, as the
    value does not depend on it), so any path from the raw kernel to them gets the right gradient."""
    b, h, w, i, o = shape
    rng = np.random.default_rng(sum(shape) + 7)
    x = jnp.asarray(rng.standard_normal((b, h, w, i)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, i, o)), jnp.float32)
    cot = jnp.asarray(rng.standard_normal((b, h, w, o)), jnp.float32)
    loss = lambda conv: lambda x, k: jnp.vdot(conv(x, k), cot)  # noqa: E731
    (gx_w, gk_w), (gx_d, gk_d) = (jax.grad(loss(conv), argnums=(0, 1))(x, k) for conv in (conv3x3_winograd, conv3x3))
    assert _relative_error(gk_w, gk_d) <= 1e-4
    assert _relative_error(gx_w, gx_d) <= 1e-4
    forward, backward = transform_kernels(k)
    d_forward, d_backward = jax.grad(lambda f, g: jnp.vdot(winograd_conv3x3(x, f, g), cot), argnums=(0, 1))(
        forward, backward)
    (autodiff,) = jax.vjp(lambda f: winograd_conv(x, f), forward)[1](cot)  # plain autodiff, no custom rule
    np.testing.assert_allclose(d_forward, autodiff, rtol=0, atol=1e-5 * float(jnp.abs(autodiff).max()))
    np.testing.assert_array_equal(d_backward, 0.0)


def test_network_parameter_gradients_match_the_direct_network(random_weights):
    """jax.grad over the raw VGG parameters, through with_winograd_kernels and Winograd layers, equals the
    gradient of the direct network: every kernel and bias to 1e-4 relative (random weights, tiny image)."""
    names = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1")
    params = {n: {"kernel": jnp.asarray(k), "bias": jnp.asarray(b)} for n, (k, b) in random_weights.layers.items()
              if n in names}
    x = jnp.asarray(np.random.default_rng(3).uniform(-120, 150, (1, 18, 14, 3)), jnp.float32)
    layers = ("relu1_2", "relu2_2", "relu3_1")

    def loss(winograd_layers):
        net = VGG19Features(layers=layers, winograd_layers=winograd_layers)

        def f(p):
            feats = net.apply({"params": with_winograd_kernels(p, winograd_layers) if winograd_layers else p}, x)
            return sum(jnp.mean(feats[n] ** 2) for n in layers)
        return f

    direct = jax.jit(jax.grad(loss(())))(params)
    fast = jax.jit(jax.grad(loss(names)))(params)
    assert jax.tree.structure(fast) == jax.tree.structure(direct)
    for name in names:
        for leaf in ("kernel", "bias"):
            err = _relative_error(fast[name][leaf], direct[name][leaf])
            assert err <= 1e-4, f"{name}/{leaf}: relative error {err:.2e}"
