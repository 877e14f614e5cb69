"""stylize_batch: vmap equals a loop of stylize; buckets; sharding on fake CPU devices."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from jaxstyle import StyleConfig, stylize
from jaxstyle.engine.batch import bucket_shape, stylize_batch
from jaxstyle.engine.sharding import pad_batch, padded_size
from tests.helpers import run_on_fake_cpu_devices, smooth_image

# Gram: batching's equality to a loop at 2e-4 after 5 L-BFGS steps; W2 and sliced have their own
# (tests/objective/test_style_loss_wiring.py), their float32 statistics amplified by L-BFGS need more.
SMALL = dict(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), iterations=5, style_weight=1.0,
             style_loss="gram")


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_vmap_equals_loop(random_vgg, optimizer):
    contents = np.stack([smooth_image(32, 40, s) for s in (20, 21, 22)])
    style_a, style_b = smooth_image(36, 36, 23), smooth_image(40, 28, 24)
    styles = [style_a, style_b, style_a]
    # L-BFGS starts from the content: from noise, a line-search decision can flip on a rounding
    # difference and the images then part by ~5e-3 while the losses agree to 4e-5.
    init = "noise" if optimizer == "adam" else "content"
    config = StyleConfig(**SMALL, optimizer=optimizer, init=init,
                         learning_rate=0.005 if optimizer == "adam" else None)
    cw, sw, seeds = [1.0, 0.5, 2.0], [1.0, 3.0, 0.2], [1, 2, 3]
    batched = stylize_batch(contents, styles, config=config, vgg=random_vgg, content_weights=cw,
                            style_weights=sw, seeds=seeds, callback_every=2)
    for i in range(3):
        single_config = StyleConfig(**{**SMALL, "style_weight": sw[i]}, content_weight=cw[i], seed=seeds[i],
                                    optimizer=optimizer, init=init, learning_rate=config.learning_rate)
        single = stylize(contents[i], styles[i], config=single_config, vgg=random_vgg, callback_every=2)
        np.testing.assert_allclose(batched[i].image, single.image, atol=2e-4)
        np.testing.assert_allclose(batched[i].loss_history, single.loss_history, rtol=2e-4)
        assert batched[i].steps == single.steps == 5 and batched[i].status == "done"
        np.testing.assert_allclose(batched[i].losses["total"], single.losses["total"], rtol=2e-4)


def test_batch_validation(random_vgg):
    contents = np.stack([smooth_image(32, 32, 1)] * 2)
    with pytest.raises(ValueError, match="expected 2 style images"):
        stylize_batch(contents, [contents[0]], config=StyleConfig(**SMALL), vgg=random_vgg)
    with pytest.raises(ValueError, match="expected 2 content weight values"):
        stylize_batch(contents, [contents[0]] * 2, config=StyleConfig(**SMALL), vgg=random_vgg,
                      content_weights=[1.0])


def test_bucket_shape():
    assert bucket_shape(384, 512, 512) == (384, 512)
    assert bucket_shape(380, 512, 512) == (384, 512)  # 380 -> nearest multiple of 32
    assert bucket_shape(1000, 600, 512) == (512, 320)  # portrait: 307 -> 320
    assert bucket_shape(10, 1000, 512) == (32, 512)  # never below one multiple
    assert bucket_shape(500, 500, 24) == (24, 24)
    shapes = {bucket_shape(h, w, 512) for h in range(300, 400) for w in (512, 640)}
    assert len(shapes) <= 6


def test_pad_batch_rule():
    tree = {"a": np.arange(5), "b": np.ones((5, 2))}
    padded = pad_batch(tree, 4)
    assert padded["a"].tolist() == [0, 1, 2, 3, 4, 4, 4, 4] and padded["b"].shape == (8, 2)
    assert padded_size(8, 4) == 8 and padded_size(1, 4) == 4


SHARDED = textwrap.dedent("""
    import numpy as np, jax
    assert jax.device_count() == 4, jax.devices()
    from jaxstyle import StyleConfig
    from jaxstyle.engine.batch import stylize_batch
    from jaxstyle.engine.sharding import batch_mesh
    from tests.helpers import random_layers, smooth_image
    from jaxstyle.model.vgg import CAFFE_PREPROCESSING
    from jaxstyle.weights.formats import VGGWeights
    layers = random_layers(0)
    k, b = layers["conv1_1"]; layers["conv1_1"] = (k / 64.0, b)
    vgg = VGGWeights(layers, CAFFE_PREPROCESSING, "t", "").to_vgg()
    config = StyleConfig(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), iterations=4,
                         style_weight=1.0, style_loss="gram")
    contents = np.stack([smooth_image(32, 32, s) for s in range(6)])  # 6 pairs on 4 devices: padded to 8
    styles = [smooth_image(32, 32, 10 + s % 2) for s in range(6)]
    plain = stylize_batch(contents, styles, config=config, vgg=vgg)
    sharded = stylize_batch(contents, styles, config=config, vgg=vgg, mesh=batch_mesh())
    assert len(sharded) == 6
    for p, s in zip(plain, sharded):
        np.testing.assert_allclose(p.image, s.image, atol=1e-4)
        np.testing.assert_allclose(p.loss_history, s.loss_history, rtol=1e-4)
    print("SHARDED-OK")
""")


@pytest.mark.slow
def test_sharded_equals_unsharded_on_4_cpu_devices():
    proc = run_on_fake_cpu_devices(SHARDED)
    assert proc.returncode == 0 and "SHARDED-OK" in proc.stdout, proc.stderr[-3000:]
