"""The feed-forward image transformation network: shapes, range, conditional instance norm, mixing,
batching, jit and gradients, on tiny widths."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.model.transformer import (
    ConditionalInstanceNorm,
    TransformerNet,
    init_network,
    parameter_count,
    reflect_pad,
)
from tests.helpers import smooth_image

TINY = {"width": 4, "residual_blocks": 1}


def perturbed(params: dict, seed: int) -> dict:
    """``params`` with random norm scales/shifts and output bias, so that no layer is an identity."""
    leaves, tree = jax.tree_util.tree_flatten_with_path(params)
    rng = np.random.default_rng(seed)
    out = []
    for path, leaf in leaves:
        name = path[-1].key
        noise = rng.normal(0.0, 0.3, leaf.shape).astype(np.float32)
        out.append(leaf + noise if name in ("gamma", "beta", "bias") else leaf)
    return jax.tree_util.tree_unflatten(tree, out)


def styles_rows(params: dict, rows) -> dict:
    """A one-style (or averaged) network's parameters from a several-style one: ``rows`` [1, styles]
    weights applied to every gamma and beta."""
    rows = np.asarray(rows, np.float64)

    def pick(path, leaf):
        if path[-1].key in ("gamma", "beta"):
            return jnp.asarray(rows @ np.asarray(leaf, np.float64), jnp.float32)
        return leaf

    return jax.tree_util.tree_map_with_path(pick, params)


def photo(b: int, h: int, w: int, seed: int = 0) -> jax.Array:
    return jnp.stack([jnp.asarray(smooth_image(h, w, seed + i)) for i in range(b)])


@pytest.fixture(scope="module")
def two_styles():
    net = TransformerNet(styles=2, **TINY)
    return net, perturbed(init_network(jax.random.PRNGKey(0), net, size=8), seed=1)


def test_reflect_pad_reflects_where_it_can_and_repeats_the_edge_where_it_cannot():
    x = jnp.arange(5 * 2, dtype=jnp.float32).reshape(1, 5, 2, 1)
    got = reflect_pad(x, (4, 1), (1, 3))
    want = np.pad(np.pad(np.asarray(x), ((0, 0), (4, 1), (0, 0), (0, 0)), mode="reflect"),
                  ((0, 0), (0, 0), (1, 3), (0, 0)), mode="edge")  # 5 rows reflect 4; 2 columns cannot reflect 3
    np.testing.assert_array_equal(got, want)
    assert reflect_pad(x, (0, 0), (0, 0)) is x


def test_conditional_instance_norm_against_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (2, 5, 6, 4)).astype(np.float32)
    gamma = rng.normal(1.0, 0.5, (3, 4)).astype(np.float32)
    beta = rng.normal(0.0, 0.5, (3, 4)).astype(np.float32)
    mix = np.array([[0.2, 0.5, 0.3], [0.0, 0.0, 1.0]], np.float32)
    got = ConditionalInstanceNorm(styles=3).apply({"params": {"gamma": gamma, "beta": beta}}, x, mix)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(1, 2), keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=(1, 2), keepdims=True)
    want = (x64 - mean) / np.sqrt(var + 1e-5) * (mix @ gamma)[:, None, None] + (mix @ beta)[:, None, None]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 7), (33, 50)])
def test_any_size_gives_an_image_of_that_size_in_0_1(two_styles, size):
    net, params = two_styles
    x = photo(2, *size)
    y = net.apply({"params": params}, x, jnp.array([[1.0, 0.0], [0.25, 0.75]]))
    assert y.shape == (2, *size, 3) and y.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(y))) and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert float(jnp.abs(y[0] - y[1]).max()) > 1e-3  # the images' styles differ


def test_a_one_hot_mix_is_that_style_alone(two_styles):
    net, params = two_styles
    single = TransformerNet(styles=1, **TINY)
    x = photo(1, 12, 9)
    for k, row in enumerate(np.eye(2, dtype=np.float32)):
        both = net.apply({"params": params}, x, row[None])
        alone = single.apply({"params": styles_rows(params, np.eye(2)[k:k + 1])}, x, jnp.ones((1, 1)))
        np.testing.assert_allclose(both, alone, rtol=0, atol=1e-6)
    first, second = (net.apply({"params": params}, x, row[None]) for row in np.eye(2, dtype=np.float32))
    assert float(jnp.abs(first - second).max()) > 1e-2


def test_a_mix_interpolates_the_norms_and_the_output_moves_continuously(two_styles):
    net, params = two_styles
    x = photo(1, 12, 9)

    def at(t):
        return net.apply({"params": params}, x, jnp.array([[1.0 - t, t]]))

    averaged = TransformerNet(styles=1, **TINY).apply({"params": styles_rows(params, [[0.5, 0.5]])}, x,
                                                      jnp.ones((1, 1)))
    np.testing.assert_allclose(at(0.5), averaged, atol=1e-5)
    span = float(jnp.abs(at(1.0) - at(0.0)).max())
    steps = [float(jnp.abs(at(0.5 + d) - at(0.5)).max()) for d in (1e-1, 1e-2, 1e-3)]
    assert span > 1e-2
    assert steps[0] > steps[1] > steps[2] and steps[2] < 0.01 * span


def test_a_batch_of_two_is_two_single_calls(two_styles):
    net, params = two_styles
    x = photo(2, 10, 13, seed=5)
    mix = jnp.array([[0.9, 0.1], [0.0, 1.0]])
    both = net.apply({"params": params}, x, mix)
    for i in range(2):
        np.testing.assert_allclose(both[i:i + 1], net.apply({"params": params}, x[i:i + 1], mix[i:i + 1]),
                                   atol=1e-5)


def test_jit_matches_eager_and_compiles_once_per_shape(two_styles):
    net, params = two_styles
    traces = []

    def forward(p, x, mix):
        traces.append(x.shape)
        return net.apply({"params": p}, x, mix)

    jitted = jax.jit(forward)
    mix = jnp.array([[0.3, 0.7]])
    x = photo(1, 9, 11)
    np.testing.assert_allclose(jitted(params, x, mix), forward(params, x, mix), atol=1e-5)
    jitted(params, photo(1, 9, 11, seed=3), jnp.array([[1.0, 0.0]]))
    assert traces == [(1, 9, 11, 3), (1, 9, 11, 3)]  # one trace for jit, one eager call


def test_gradients_are_finite_and_reach_every_parameter(two_styles):
    net, params = two_styles
    x = photo(2, 7, 6)
    mix = jnp.array([[0.5, 0.5], [1.0, 0.0]])

    def loss(p, x):
        return jnp.mean(jnp.square(net.apply({"params": p}, x, mix) - 0.3))

    grads, grad_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert bool(jnp.all(jnp.isfinite(g))), jax.tree_util.keystr(path)
        assert float(jnp.abs(g).max()) > 0, jax.tree_util.keystr(path)
    assert bool(jnp.all(jnp.isfinite(grad_x))) and float(jnp.abs(grad_x).max()) > 0


def test_parameters_are_float32_and_counted_by_hand():
    w, styles, blocks = 4, 3, 2
    net = TransformerNet(width=w, styles=styles, residual_blocks=blocks)
    params = jax.eval_shape(lambda key: init_network(key, net, size=5), jax.random.PRNGKey(1))  # no compile
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(params)} == {jnp.dtype(jnp.float32)}
    convs = 81 * 3 * w + 9 * w * 2 * w + 9 * 2 * w * 4 * w + blocks * 2 * 9 * (4 * w) ** 2 \
        + 9 * 4 * w * 2 * w + 9 * 2 * w * w + 81 * w * 3 + 3
    norms = 2 * styles * (w + 2 * w + 4 * w + blocks * 2 * 4 * w + 2 * w + w)
    assert parameter_count(params) == convs + norms
    shapes = jax.eval_shape(lambda key: init_network(key, TransformerNet(), size=16), jax.random.PRNGKey(0))
    assert parameter_count(shapes) == 1_677_635  # Johnson et al.'s 1.68 M (width 32, 5 blocks)


def test_initial_parameters_are_lecun_normal_kernels_unit_scales_and_zero_shifts():
    net = TransformerNet(styles=2)
    params = init_network(jax.random.PRNGKey(3), net, size=4)
    flax_shapes = jax.eval_shape(net.init, jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 3)), jnp.ones((1, 2)))
    assert jax.tree_util.tree_map(jnp.shape, params) == jax.tree_util.tree_map(jnp.shape, flax_shapes["params"])
    firsts = set()
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        leaf, name = np.asarray(leaf), path[-1].key
        if name == "kernel":
            fan_in = np.prod(leaf.shape[:-1])
            assert abs(leaf.std() * np.sqrt(fan_in) - 1.0) < 0.1, jax.tree_util.keystr(path)
            assert np.abs(leaf).max() <= 2.0 / 0.8796 / np.sqrt(fan_in) + 1e-6  # truncated at 2 deviations
            firsts.add(float(leaf.flat[0] * np.sqrt(fan_in)))
        else:
            np.testing.assert_array_equal(leaf, 1.0 if name == "gamma" else 0.0)
    assert len(firsts) == 6 + 2 * 5  # every kernel (six, two per residual block) its own draws
    again = init_network(jax.random.PRNGKey(3), net, size=9)
    other = init_network(jax.random.PRNGKey(4), net, size=4)
    np.testing.assert_array_equal(again["up_1"]["kernel"], params["up_1"]["kernel"])
    assert not np.array_equal(other["up_1"]["kernel"], params["up_1"]["kernel"])


def test_bfloat16_compute_keeps_float32_parameters_and_output(two_styles):
    _, params = two_styles
    x, mix = photo(1, 16, 16), jnp.array([[0.4, 0.6]])
    full = TransformerNet(styles=2, **TINY).apply({"params": params}, x, mix)
    half = TransformerNet(styles=2, dtype=jnp.bfloat16, **TINY).apply({"params": params}, x, mix)
    assert half.dtype == jnp.float32 and float(half.min()) >= 0.0 and float(half.max()) <= 1.0
    np.testing.assert_allclose(half, full, atol=0.05)


@pytest.mark.parametrize("x_shape, mix_shape, message", [
    ((5, 7, 3), (1, 2), r"expected x of shape \[B, H, W, 3\].*got \(5, 7, 3\)"),
    ((1, 5, 7, 4), (1, 2), r"expected x of shape \[B, H, W, 3\].*got \(1, 5, 7, 4\)"),
    ((1, 0, 7, 3), (1, 2), r"expected x of shape \[B, H, W, 3\].*got \(1, 0, 7, 3\)"),
    ((1, 5, 7, 3), (1, 3), r"expected mix of shape \[B, styles\] = \[1, 2\], got \(1, 3\)"),
    ((2, 5, 7, 3), (1, 2), r"expected mix of shape \[B, styles\] = \[2, 2\], got \(1, 2\)"),
    ((1, 5, 7, 3), (2,), r"expected mix of shape \[B, styles\] = \[1, 2\], got \(2,\)"),
])
def test_bad_shapes_are_one_line_errors(two_styles, x_shape, mix_shape, message):
    net, params = two_styles
    with pytest.raises(ValueError, match=message):
        net.apply({"params": params}, jnp.zeros(x_shape), jnp.ones(mix_shape) / 2)


def test_integer_images_and_bad_sizes_are_refused(two_styles):
    net, params = two_styles
    with pytest.raises(ValueError, match="expected x of a float dtype in \\[0, 1\\], got uint8"):
        net.apply({"params": params}, jnp.zeros((1, 4, 4, 3), jnp.uint8), jnp.ones((1, 2)) / 2)
    with pytest.raises(ValueError, match="expected width >= 1"):
        init_network(jax.random.PRNGKey(0), TransformerNet(width=0))
    with pytest.raises(ValueError, match="expected size >= 1, got 0"):
        init_network(jax.random.PRNGKey(0), TransformerNet(**TINY), size=0)
