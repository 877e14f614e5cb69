"""--style-loss gram|w2|sliced wired through the objective: stylize, batch (vmap), several styles,
content and style masks, coarse-to-fine, the blocks refusal, the planner, the CLI (tiny shapes,
random VGG-19 weights)."""

from __future__ import annotations

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle import StyleConfig, stylize
from jaxstyle.cli import main
from jaxstyle.engine.batch import stylize_batch
from jaxstyle.engine.evaluation import BlockByBlock
from jaxstyle.engine.planner import plan_evaluation
from jaxstyle.objective.blocks import Blocking
from jaxstyle.objective.losses import weighted_style_loss
from jaxstyle.objective.sliced import project, resample_sorted
from jaxstyle.objective.statistics import blend_moments, moments, w2_target
from jaxstyle.objective.style_losses import layer_projections
from jaxstyle.objective.targets import statistic_targets, style_parts, style_target_key, style_targets
from jaxstyle.objective.terms import Objective, features
from tests.helpers import run_on_fake_cpu_devices, smooth_image

SMALL = dict(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), iterations=6, style_weight=1.0)
LOSSES = ("w2", "sliced")


@pytest.fixture(scope="module")
def pair():
    return smooth_image(32, 40, seed=10), smooth_image(36, 36, seed=11)


def test_config_validates_and_defaults_to_w2(random_vgg, capsys):
    """W2 is the default (it won the equal-time comparison: benchmarks/README.md); the CLI's too."""
    assert StyleConfig().style_loss == "w2"
    assert Objective.build(StyleConfig(), random_vgg).style_loss == "w2"
    assert Objective.build(StyleConfig(style_loss="gram"), random_vgg).style_loss == "gram"
    from jaxstyle.cli.options import build_parser

    assert build_parser().parse_args(["stylize", "a.jpg", "b.jpg", "-o", "c.png"]).style_loss == "w2"
    with pytest.raises(ValueError, match="expected style_loss one of gram, w2, sliced, got 'l1'"):
        StyleConfig(style_loss="l1")


@pytest.mark.parametrize("loss", LOSSES)
def test_stylize_loss_decreases(random_vgg, pair, loss):
    content, style = pair
    result = stylize(content, style, config=StyleConfig(**SMALL, style_loss=loss), vgg=random_vgg)
    assert result.status == "done" and result.steps == 6
    assert np.isfinite(result.loss_history).all()
    assert result.loss_history[-1] < result.loss_history[0]
    assert result.image.min() >= 0.0 and result.image.max() <= 1.0


@pytest.mark.parametrize("loss", LOSSES)
def test_coarse_to_fine_and_colours(random_vgg, pair, loss):
    content, style = pair
    config = StyleConfig(**{**SMALL, "iterations": 3}, style_loss=loss, scales=(20,), scale_iterations=2,
                         preserve_colors="histogram")
    result = stylize(content, style, config=config, vgg=random_vgg)
    assert result.status == "done" and np.isfinite(result.loss_history).all()


@pytest.mark.parametrize("loss", LOSSES)
def test_batch_vmap_equals_loop(random_vgg, loss):
    contents = np.stack([smooth_image(32, 40, s) for s in (20, 21)])
    styles = [smooth_image(36, 36, 23), smooth_image(40, 28, 24)]  # style sizes differ: targets still stack
    # 2 steps: W2's Newton-Schulz products round differently batched (~1e-5 relative in the loss),
    # which L-BFGS's line search amplifies to ~5e-3 in the image by step 4 (the losses still agree to 1e-4).
    config = StyleConfig(**{**SMALL, "iterations": 2}, style_loss=loss)
    batched = stylize_batch(contents, styles, config=config, vgg=random_vgg)
    for i in range(2):
        single = stylize(contents[i], styles[i], config=config, vgg=random_vgg)
        np.testing.assert_allclose(batched[i].image, single.image, atol=1e-4)
        np.testing.assert_allclose(batched[i].loss_history, single.loss_history, rtol=1e-4)


def _parts(random_vgg, objective, images, masks=None):
    params = objective.params(random_vgg)
    masks = masks or [None] * len(images)
    return params, [style_parts(params, jnp.asarray(s), objective, None if m is None else jnp.asarray(m))
                    for s, m in zip(images, masks)]


def test_w2_blend_is_blend_of_moments(random_vgg):
    objective = Objective.build(StyleConfig(**SMALL, style_loss="w2"), random_vgg)
    images = [smooth_image(24, 24, 1), smooth_image(32, 16, 2)]
    params, parts = _parts(random_vgg, objective, images)
    targets = statistic_targets(parts, (0.25, 0.75), objective, {}, regions=False)
    for n in objective.style_layers:
        feats = [features(params, jnp.asarray(s), objective, (n,))[n] for s in images]
        want = w2_target(blend_moments([moments(f) for f in feats], jnp.asarray([0.25, 0.75])))
        for a, b in zip(targets[n], want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_sliced_blend_is_the_pooled_pixels(random_vgg):
    """Two styles of equal pixel count blended equally: exactly the sorted projections of all their pixels."""
    objective = Objective.build(StyleConfig(**SMALL, style_loss="sliced"), random_vgg)
    images = [smooth_image(24, 24, 1), smooth_image(32, 18, 2)]
    params, parts = _parts(random_vgg, objective, images)
    sizes = {n: 2 * parts[0][n][0].shape[0] for n in objective.style_layers}
    targets = statistic_targets(parts, (0.5, 0.5), objective, sizes, regions=False)
    for i, n in enumerate(objective.style_layers):
        feats = [features(params, jnp.asarray(s), objective, (n,))[n] for s in images]
        proj = layer_projections(i, feats[0].shape[-1])
        pooled = jnp.sort(jnp.concatenate([project(f, proj) for f in feats]), axis=0)
        np.testing.assert_allclose(targets[n]["sorted"], pooled, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(targets[n]["projections"], proj)


def test_sliced_one_style_is_its_sorted_projections(random_vgg):
    objective = Objective.build(StyleConfig(**SMALL, style_loss="sliced"), random_vgg)
    params, parts = _parts(random_vgg, objective, [smooth_image(24, 24, 1)])
    targets = statistic_targets(parts, (1.0,), objective, {"relu1_1": 100, "relu2_1": 144}, regions=False)
    y = parts[0]["relu2_1"][0]
    np.testing.assert_allclose(targets["relu2_1"]["sorted"], jnp.sort(y, axis=0), rtol=1e-6)  # 12x12 = 144
    np.testing.assert_allclose(targets["relu1_1"]["sorted"], resample_sorted(jnp.sort(parts[0]["relu1_1"][0], 0),
                                                                             100), rtol=1e-6)


@pytest.mark.parametrize("loss", LOSSES)
def test_content_mask_and_style_masks(random_vgg, loss):
    content = smooth_image(32, 40, 3)
    styles = [smooth_image(36, 36, 4), smooth_image(28, 40, 5)]
    content_mask = np.zeros((32, 40), np.float32)
    content_mask[:, :20] = 1.0
    style_masks = [np.ones((36, 36), np.float32), np.zeros((28, 40), np.float32)]
    style_masks[0][:, 18:] = 0.0
    style_masks[1][10:, :] = 1.0
    result = stylize(content, styles, config=StyleConfig(**SMALL, style_loss=loss), vgg=random_vgg,
                     content_mask=content_mask, style_masks=style_masks)
    assert result.status == "done" and result.loss_history[-1] < result.loss_history[0]
    # Style masks alone (blended styles, each by its own region).
    result = stylize(content, styles, config=StyleConfig(**{**SMALL, "iterations": 2}, style_loss=loss,
                                                         style_blend=(0.3, 0.7)),
                     vgg=random_vgg, style_masks=style_masks)
    assert result.status == "done" and np.isfinite(result.loss_history).all()


def test_w2_style_mask_is_the_masked_region_moments(random_vgg):
    objective = Objective.build(StyleConfig(**SMALL, style_loss="w2"), random_vgg)
    image = smooth_image(32, 32, 6)
    mask = np.zeros((32, 32), np.float32)
    mask[:16] = 1.0
    params, (parts,) = _parts(random_vgg, objective, [image], [mask])
    feats = features(params, jnp.asarray(image), objective, ("relu1_1",))["relu1_1"]
    np.testing.assert_allclose(parts["relu1_1"].mean, moments(feats[:16]).mean, rtol=1e-5, atol=1e-6)


def test_cache_keys_differ_by_loss(random_vgg):
    image = smooth_image(8, 8, 1)
    keys = {style_target_key(image, None, (8, 8), Objective.build(StyleConfig(style_loss=loss), random_vgg),
                             random_vgg) for loss in ("gram", "w2", "sliced")}
    assert len(keys) == 3


def test_w2_plans_blocks_where_gram_would(random_vgg):
    """W2's moment sums add over blocks: planned as Gram is (sliced is refused, below)."""
    w2 = plan_evaluation(256, 256, StyleConfig(**SMALL, style_loss="w2"), block_size=64)
    assert w2.blocked and w2.evaluation == plan_evaluation(256, 256, StyleConfig(**SMALL), block_size=64).evaluation
    with pytest.raises(ValueError, match="even block by block"):  # auto: blocks, then too large for this machine
        plan_evaluation(30000, 30000, StyleConfig(**SMALL, style_loss="w2"))


@pytest.mark.parametrize("loss", ["sliced"])
def test_blocks_are_refused_in_one_line(random_vgg, pair, loss):
    content, style = pair
    config = StyleConfig(**SMALL, style_loss=loss)
    with pytest.raises(ValueError, match=f"--style-loss {loss} refuses block-by-block evaluation.*--block-size off"):
        plan_evaluation(256, 256, config, block_size=64)
    with pytest.raises(ValueError, match=f"--style-loss {loss} refuses .*--style-loss gram"):
        stylize(content, style, config=config, vgg=random_vgg, evaluation=BlockByBlock(Blocking(16)))
    with pytest.raises(ValueError, match=f"--style-loss {loss} refuses block-by-block evaluation \\(a 30000x30000 run"):
        plan_evaluation(30000, 30000, config)  # "auto" would pick blocks: refused up front instead
    assert not plan_evaluation(32, 32, config, block_size=None).blocked  # whole: fine


def test_cli_style_loss_end_to_end(env, images, tmp_path, capsys):
    content, style = images
    out = tmp_path / "out.png"
    args = ["stylize", str(content), str(style), "-o", str(out), "--size", "32", "--iterations", "3",
            "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1", "--quiet"]
    assert main([*args, "--style-loss", "w2"]) == 0 and out.exists()
    assert main([*args, "--style-loss", "sliced", "--block-size", "64", "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--style-loss sliced refuses block-by-block" in err[0]


SPATIAL = textwrap.dedent("""
    import numpy as np, jax
    from jaxstyle import StyleConfig, stylize
    from jaxstyle.engine.sharding import spatial_mesh
    from tests.helpers import random_layers, smooth_image
    from jaxstyle.model.vgg import CAFFE_PREPROCESSING
    from jaxstyle.weights.formats import VGGWeights
    vgg = VGGWeights(random_layers(0), CAFFE_PREPROCESSING, "t", "").to_vgg()
    content, style = smooth_image(32, 32, 1), smooth_image(36, 30, 2)
    for loss in ("w2", "sliced"):
        # one step: L-BFGS amplifies the devices' other reduction order (W2's float32 root) within a few steps
        config = StyleConfig(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), iterations=1,
                             style_weight=1.0, style_loss=loss)
        plain = stylize(content, style, config=config, vgg=vgg)
        sharded = stylize(content, style, config=config, vgg=vgg, mesh=spatial_mesh(32, 32))
        np.testing.assert_allclose(sharded.image, plain.image, atol=2e-4)
    print("SPATIAL-OK")
""")


@pytest.mark.slow
def test_shard_image_equals_unsharded_on_4_cpu_devices():
    proc = run_on_fake_cpu_devices(SPATIAL)
    assert proc.returncode == 0 and "SPATIAL-OK" in proc.stdout, proc.stderr[-3000:]


def test_gram_terms_unchanged(random_vgg, pair):
    """--style-loss gram is Gatys' objective as before W2 became the default: Gram targets, and the
    same terms as losses.weighted_style_loss computes them directly."""
    objective = Objective.build(StyleConfig(**SMALL, style_loss="gram"), random_vgg)
    assert objective != Objective.build(StyleConfig(**SMALL), random_vgg)  # the default is w2 now
    params = objective.params(random_vgg)
    targets = style_targets(params, jnp.asarray(pair[1]), objective)
    feats = features(params, jnp.asarray(pair[0]), objective, objective.style_layers)
    direct = weighted_style_loss(feats, targets, objective.style_layers, jnp.full((2,), 0.5))
    assert float(direct) > 0
    assert jax.tree.structure(style_parts(objective.params(random_vgg), jnp.asarray(pair[1]), objective)) \
        == jax.tree.structure({"relu1_1": 0, "relu2_1": 0})


@pytest.mark.parametrize("loss", LOSSES)
def test_video_sequential_and_parallel(random_vgg, loss):
    from jaxstyle.config import VideoConfig
    from jaxstyle.engine.video import stylize_video

    big = smooth_image(24, 30, 3)
    frames = [big[:, 2 * i: 2 * i + 24] for i in range(3)]

    def flow(a, b):
        f = np.zeros((24, 24, 2), np.float32)
        f[..., 0] = 2 * (a - b)
        return f

    config = StyleConfig(**{**SMALL, "iterations": 2}, style_loss=loss)
    for video in (VideoConfig(first_iterations=2), VideoConfig(mode="parallel", passes=2, first_iterations=2)):
        result = stylize_video(frames, smooth_image(28, 28, 4), vgg=random_vgg, flow=flow, config=config, video=video)
        assert len(result.frames(3)) == 3
        assert all(np.isfinite(r.losses["style"]) and r.losses["style"] > 0 for r in result.records)
