"""The network's "matmul" convolutions (one matrix product, space-to-depth, upsampling on the small
grid) equal ``lax.conv`` in value and in both gradients; the whole network is the same function
with either formulation and keeps its parameter tree (model files load unchanged)."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.model.transformer import (
    TransformerNet,
    conv_direct,
    conv_formulation,
    conv_matmul,
    conv_space_to_depth,
    conv_upsampled,
    init_network,
    reflect_pad,
    upsample,
)
from tests.model.test_transformer import perturbed, photo


def random(shape, seed, scale=1.0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape) * scale, jnp.float32)


def assert_same_function(fast, reference, x, kernel, rtol=2e-5):
    """fast(x, kernel) == reference(x, kernel), and the gradients of a non-linear function of the
    output with respect to x and kernel, to ``rtol`` of each array's largest magnitude."""
    want = reference(x, kernel)
    got = jax.jit(fast)(x, kernel)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * float(jnp.abs(want).max()))
    weights = random(want.shape, 99)

    def grads(f):
        return jax.jit(jax.grad(lambda x, k: jnp.sum(jnp.sin(f(x, k)) * weights), argnums=(0, 1)))(x, kernel)

    for g, w in zip(grads(fast), grads(reference)):
        assert float(jnp.abs(w).max()) > 0
        np.testing.assert_allclose(g, w, rtol=0, atol=rtol * float(jnp.abs(w).max()))


@pytest.mark.parametrize("k, size", [(1, (4, 5)), (3, (7, 9)), (5, (6, 11)), (9, (12, 9))])
@pytest.mark.parametrize("inputs, outputs", [(3, 5), (5, 3), (4, 4)])  # patches, shifts, patches
def test_the_matrix_product_convolution_equals_lax_conv(k, size, inputs, outputs):
    x, kernel = random((2, *size, inputs), 0), random((k, k, inputs, outputs), 1, 0.2)
    assert_same_function(conv_matmul, conv_direct, x, kernel)


@pytest.mark.parametrize("factor, stride, k, size", [(2, 1, 9, (16, 20)), (2, 1, 9, (13, 10)), (4, 1, 9, (17, 23)),
                                                     (2, 1, 3, (7, 8)), (2, 2, 3, (10, 9)), (4, 4, 5, (13, 12))])
@pytest.mark.parametrize("inner", [conv_direct, conv_matmul])
def test_space_to_depth_equals_lax_conv_at_any_size_and_stride(factor, stride, k, size, inner):
    x, kernel = random((2, *size, 3), 2), random((k, k, 3, 5), 3, 0.2)
    fast = functools.partial(conv_space_to_depth, factor=factor, stride=stride, inner=inner)
    assert_same_function(fast, functools.partial(conv_direct, stride=stride), x, kernel)


@pytest.mark.parametrize("size", [(1, 1), (1, 4), (3, 2), (5, 7)])
@pytest.mark.parametrize("inner", [conv_direct, conv_matmul])
def test_upsampled_conv_equals_upsampling_reflection_padding_and_lax_conv(size, inner):
    x, kernel = random((2, *size, 4), 4), random((3, 3, 4, 3), 5, 0.3)

    def reference(x, kernel):
        return conv_direct(reflect_pad(upsample(x), (1, 1), (1, 1)), kernel)

    assert_same_function(functools.partial(conv_upsampled, inner=inner), reference, x, kernel)


def test_auto_is_matmul_on_cpu_and_direct_elsewhere():
    assert conv_formulation("auto", "cpu") == "matmul"
    assert conv_formulation("auto", "gpu") == conv_formulation("auto", "tpu") == "direct"
    assert conv_formulation("direct", "cpu") == "direct" and conv_formulation("matmul", "gpu") == "matmul"
    with pytest.raises(ValueError, match=r"expected conv in \('auto', 'direct', 'matmul'\), got 'fast'"):
        conv_formulation("fast", "cpu")
    with pytest.raises(ValueError, match="expected conv in"):
        TransformerNet(conv="fast").apply({"params": {}}, jnp.zeros((1, 4, 4, 3)), jnp.ones((1, 1)))


def convolution_kernels(conv: str) -> list[str]:
    """The kernel shapes of the convolutions XLA is given for a tiny network (width 4, one block)."""
    net = TransformerNet(width=4, residual_blocks=1, conv=conv)
    params = init_network(jax.random.PRNGKey(0), net, size=8)
    text = jax.jit(lambda p, x: net.apply({"params": p}, x, jnp.ones((1, 1)))).lower(params, photo(1, 16, 16)).as_text()
    return re.findall(r"stablehlo\.convolution.*?:\s*\(tensor<[0-9x]+xf32>, tensor<([0-9x]+)xf32>\)", text)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="'auto' is 'matmul' on CPU only")
def test_on_cpu_only_the_downsamplings_and_the_upsampling_phases_are_convolutions():
    """The 9x9 and stride-1 3x3 convolutions, which XLA:CPU runs 3-15x slower than their products,
    are not in the CPU program; "direct" keeps them all (kernels [k, k, I, O])."""
    assert convolution_kernels("direct") == ["9x9x3x4", "3x3x4x8", "3x3x8x16", "3x3x16x16", "3x3x16x16",
                                             "3x3x16x8", "3x3x8x4", "9x9x4x3"]
    assert convolution_kernels("auto") == ["3x3x4x8", "3x3x8x16"] + ["2x2x16x8"] * 4 + ["2x2x8x4"] * 4


@pytest.fixture(scope="module")
def network():
    params = perturbed(init_network(jax.random.PRNGKey(5), TransformerNet(width=8, styles=2, residual_blocks=2)), 3)
    return params, photo(2, 13, 22, seed=4), jnp.array([[0.8, 0.2], [0.0, 1.0]])


def test_the_network_is_the_same_function_with_either_formulation(network):
    params, x, mix = network

    def loss(p, x, conv):
        net = TransformerNet(width=8, styles=2, residual_blocks=2, conv=conv)
        y = net.apply({"params": p}, x, mix)
        return jnp.mean(jnp.square(y - 0.3)), y

    (direct_loss, direct), direct_grads = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True),
                                                  static_argnums=2)(params, x, "direct")
    (fast_loss, fast), fast_grads = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True),
                                            static_argnums=2)(params, x, "matmul")
    assert float(jnp.abs(direct - 0.5).max()) > 0.05  # not a flat output
    np.testing.assert_allclose(fast, direct, rtol=0, atol=1e-5)
    np.testing.assert_allclose(fast_loss, direct_loss, rtol=1e-5)
    # The last shift of a residual block has a true gradient of 0 (the next normalisations remove it):
    # rounding there is measured against the largest gradient.
    largest = max(float(jnp.abs(g).max()) for g in jax.tree_util.tree_leaves(direct_grads))
    fast_leaves = jax.tree_util.tree_leaves(fast_grads)
    for (path, want), got in zip(jax.tree_util.tree_leaves_with_path(direct_grads), fast_leaves, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-4 * float(jnp.abs(want).max()) + 1e-6 * largest,
                                   err_msg=jax.tree_util.keystr(path))


def test_the_parameter_tree_is_nn_conv_s_names_and_shapes():
    """A model file stores this tree: the formulations must not change a name or a shape."""
    w = 2
    got = jax.eval_shape(TransformerNet(width=w, styles=3, residual_blocks=1, conv="matmul").init,
                         jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)), jnp.ones((1, 3)))["params"]

    def norm(c):
        return {"gamma": (3, c), "beta": (3, c)}

    def conv(k, i, o, bias=False):
        return {"kernel": (k, k, i, o), **({"bias": (o,)} if bias else {})}

    want = {"conv_in": conv(9, 3, w), "conv_in_norm": norm(w),
            "down_1": conv(3, w, 2 * w), "down_1_norm": norm(2 * w),
            "down_2": conv(3, 2 * w, 4 * w), "down_2_norm": norm(4 * w),
            "residual_0": {"conv_a": conv(3, 4 * w, 4 * w), "norm_a": norm(4 * w),
                           "conv_b": conv(3, 4 * w, 4 * w), "norm_b": norm(4 * w)},
            "up_1": conv(3, 4 * w, 2 * w), "up_1_norm": norm(2 * w),
            "up_2": conv(3, 2 * w, w), "up_2_norm": norm(w),
            "conv_out": conv(9, w, 3, bias=True)}
    assert jax.tree_util.tree_map(lambda leaf: leaf.shape, got) == want
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(got)} == {jnp.dtype(jnp.float32)}
