"""VGG-19 activations against an independent float64 NumPy implementation."""

from __future__ import annotations

import numpy as np
import pytest

from jaxstyle.model.vgg import CAFFE_PREPROCESSING, LAYER_NAMES, VGG19, canonical_layer, min_input_size, preprocess
from tests.helpers import smooth_image


def np_conv3x3(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Cross-correlation with zero padding 1; x [H, W, I], kernel [3, 3, I, O]."""
    h, w, _ = x.shape
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, w, kernel.shape[3]))
    for dy in range(3):
        for dx in range(3):
            out += padded[dy:dy + h, dx:dx + w, :] @ kernel[dy, dx]
    return out + bias


def np_pool(x: np.ndarray, mode: str) -> np.ndarray:
    h, w, c = x.shape
    x = x[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c)
    return x.max(axis=(1, 3)) if mode == "max" else x.mean(axis=(1, 3))


def np_vgg(image: np.ndarray, layers: dict, pooling: str) -> dict[str, np.ndarray]:
    x = image.astype(np.float64) * 255.0
    x = x[..., ::-1] - np.array([103.939, 116.779, 123.68])
    out = {}
    for name in LAYER_NAMES:
        if name.startswith("conv"):
            k, b = layers[name]
            x = np_conv3x3(x, k.astype(np.float64), b.astype(np.float64))
        elif name.startswith("relu"):
            x = np.maximum(x, 0.0)
        else:
            x = np_pool(x, pooling)
        out[name] = x
    return out


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_activations_match_float64_numpy(random_weights, pooling):
    image = smooth_image(32, 48, seed=1)
    vgg = random_weights.to_vgg(pooling)
    expected = np_vgg(image, random_weights.layers, pooling)
    names = ("conv1_1", "relu1_2", "pool1", "relu2_1", "conv3_4", "relu4_2", "pool4", "relu5_1", "pool5")
    got = vgg.features(image, layers=names)
    for name in names:
        ref = expected[name]
        assert got[name].shape == ref.shape, name
        rel = np.linalg.norm(np.asarray(got[name], np.float64) - ref) / np.linalg.norm(ref)
        assert rel < 1e-5, (name, rel)


def test_batched_equals_single(random_vgg):
    images = np.stack([smooth_image(32, 32, s) for s in range(3)])
    batched = random_vgg.features(images, layers=("relu2_1",))["relu2_1"]
    assert batched.shape == (3, 16, 16, 128)
    for i in range(3):
        single = random_vgg.features(images[i], layers=("relu2_1",))["relu2_1"]
        np.testing.assert_allclose(batched[i], single, rtol=1e-5, atol=1e-5)


def test_aliases_name_the_same_activation(random_vgg):
    image = smooth_image(32, 32, 2)
    feats = random_vgg.features(image, layers=("block2_conv2", "conv2_2", "block2_relu2", "block2_pool"))
    np.testing.assert_array_equal(feats["block2_conv2"], feats["conv2_2"])
    assert float(feats["block2_relu2"].min()) >= 0.0
    assert feats["block2_pool"].shape == (8, 8, 128)


def test_stops_at_deepest_layer(random_weights):
    """Only the parameters up to the deepest layer are needed: nothing past it is computed."""
    params = {n: {"kernel": k, "bias": b} for n, (k, b) in random_weights.layers.items()
              if n in ("conv1_1", "conv1_2", "conv2_1")}
    vgg = VGG19(params=params, preprocessing=CAFFE_PREPROCESSING)
    feats = vgg.features(smooth_image(16, 16, 3), layers=("relu2_1",))
    assert feats["relu2_1"].shape == (8, 8, 128)


def test_unknown_layer_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown layer 'relu9_9'"):
        canonical_layer("relu9_9")
    assert canonical_layer("block4_conv2") == "conv4_2"
    assert canonical_layer("block5_pool") == "pool5"


def test_too_small_image_is_refused(random_vgg):
    assert min_input_size(("relu5_1",)) == 16
    with pytest.raises(ValueError, match="expected at least 16x16 px for layer relu5_1"):
        random_vgg.features(np.zeros((8, 40, 3), np.float32), layers=("relu5_1",))


def test_preprocessing_is_caffe_bgr_mean_subtracted():
    rgb = np.array([[[1.0, 0.5, 0.0]]], np.float32)
    x = np.asarray(preprocess(rgb, CAFFE_PREPROCESSING))[0, 0]
    np.testing.assert_allclose(x, [0.0 - 103.939, 127.5 - 116.779, 255.0 - 123.68], rtol=1e-6)


def test_conv3x3_gradients_equal_lax():
    import jax
    import jax.test_util

    from jaxstyle.model.vgg import conv3x3

    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
    k = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    ref = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",  # noqa: E731
                                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(conv3x3(x, k), ref(x, k), rtol=1e-5, atol=1e-5)
    loss = lambda f: lambda x, k: (f(x, k) ** 2 * np.arange(4)).sum()  # noqa: E731
    got = jax.grad(loss(conv3x3), argnums=(0, 1))(x, k)
    want = jax.grad(loss(ref), argnums=(0, 1))(x, k)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
    with jax.enable_x64(True):
        jax.test_util.check_grads(conv3x3, (x.astype(np.float64), k.astype(np.float64)), order=1,
                                  modes=("rev",))


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool2x2_value_and_gradient_equal_reduce_window(mode):
    """After a ReLU (zeros tie), the reshape pooling's gradient equals reduce_window's."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from jaxstyle.model.vgg import pool2x2

    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 9, 7, 5)), jnp.float32)
    cotangent = jnp.asarray(np.random.default_rng(1).standard_normal((2, 4, 3, 5)), jnp.float32)
    reference = nn.max_pool if mode == "max" else nn.avg_pool

    def through(pool):
        return jax.vjp(lambda v: pool(jax.nn.relu(v)), x)

    ours, ours_vjp = through(lambda v: pool2x2(v, mode))
    theirs, theirs_vjp = through(lambda v: reference(v, (2, 2), strides=(2, 2), padding="VALID"))
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(ours_vjp(cotangent)[0], theirs_vjp(cotangent)[0], rtol=0, atol=1e-7)


def test_remat_changes_neither_values_nor_gradients(random_weights):
    import jax
    import jax.numpy as jnp

    from jaxstyle.model.vgg import VGG19Features

    params = random_weights.to_vgg().params
    x = jnp.asarray(smooth_image(40, 48, seed=3)[None] * 255 - 120)
    layers = ("relu1_1", "relu3_1", "relu4_2")

    def loss(remat):
        net = VGG19Features(layers=layers, remat=remat)
        return lambda v: sum(jnp.sum(f * f) for f in net.apply({"params": params}, v).values())

    value, grad = jax.value_and_grad(loss(False))(x)
    value_remat, grad_remat = jax.value_and_grad(loss(True))(x)
    np.testing.assert_allclose(value_remat, value, rtol=1e-6)
    np.testing.assert_allclose(grad_remat, grad, rtol=1e-5, atol=1e-5 * float(jnp.abs(grad).max()))
