"""Feed-forward training (jaxstyle.engine.training): the loss is stylize's objective, it falls,
style targets stack and are picked per image, the temporal term, the compiled step."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.config import StyleConfig
from jaxstyle.engine import training
from jaxstyle.engine.problem import style_problem
from jaxstyle.model.transformer import TransformerNet, init_network
from jaxstyle.objective.color import RGB_TO_YIQ
from jaxstyle.objective.resample import resize
from jaxstyle.objective.targets import statistic_targets, style_parts_jit
from jaxstyle.objective.temporal import in_frame, warp
from jaxstyle.objective.warps import random_flow, temporal_error, warped_input
from tests.helpers import run_on_fake_cpu_devices, smooth_image

SMALL = dict(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), conv="direct")
SIZE = 32
loss_fn = jax.jit(training.loss_fn, static_argnums=(4,))


def build(vgg, styles=1, temporal_weight=0.0, **options):
    config = StyleConfig(**{**SMALL, **options})
    setup = training.TrainingSetup.build(config, vgg, TransformerNet(width=4, styles=styles, residual_blocks=1),
                                         temporal_weight=temporal_weight)
    return config, setup, setup.objective.params(vgg)


def contents(n, seed=0):
    return np.stack([smooth_image(SIZE, SIZE, seed + i) for i in range(n)])


def style_images(n):  # longer side SIZE: the training resize is the identity, as stylize's style_size = size
    return [smooth_image(SIZE, 24, 40 + i) for i in range(n)]


@pytest.mark.parametrize("style_loss", ["gram", "w2", "sliced"])
def test_loss_falls(random_vgg, style_loss):
    config, setup, vgg_params = build(random_vgg, style_loss=style_loss, style_weight=1.0)
    targets = training.style_targets_for_training(vgg_params, style_images(1), setup, SIZE)
    weights = training.training_weights(config)
    optimizer = training.make_optimizer(1e-2)
    mesh = training.training_mesh()
    state = training.init_train_state(jax.random.key(0), setup, optimizer, SIZE)
    images, index = contents(2), np.zeros(2, np.int32)
    losses = []
    for _ in range(20):
        state, metrics = training.train_step(state, vgg_params, targets, weights, images, index, jax.random.key(1),
                                             setup=setup, optimizer=optimizer, mesh=mesh)
        losses.append(float(metrics["loss"]))
        assert bool(metrics["finite"])
    assert int(state.step) == 20
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("style_loss", ["gram", "w2", "sliced"])
def test_loss_is_the_objective_stylize_minimises(random_vgg, style_loss):
    """Each image's terms equal style_problem's (stylize's objective for that content and its
    style) at the network's output: one scale; and style_index picks each image's style."""
    config, setup, vgg_params = build(random_vgg, styles=2, style_loss=style_loss, style_weight=1.0, tv_weight=0.5)
    styles = style_images(2)
    targets = training.style_targets_for_training(vgg_params, styles, setup, SIZE)
    net_params = init_network(jax.random.key(3), setup.network, SIZE)
    images, index = contents(2, seed=7), np.array([1, 0], np.int32)
    loss, terms = loss_fn(net_params, vgg_params, targets, training.training_weights(config), setup,
                                   images, index)
    outputs = setup.network.apply({"params": net_params}, images, jax.nn.one_hot(index, 2))
    direct = [style_problem(images[b], styles[index[b]], vgg=random_vgg, config=config).terms(outputs[b])
              for b in range(2)]
    for name in ("content", "style", "tv", "range", "total"):
        np.testing.assert_allclose(terms[name], np.mean([float(d[name]) for d in direct]), rtol=2e-5, atol=1e-8)
    assert float(loss) == float(terms["total"]) and float(terms["style"]) > 0 and float(terms["range"]) == 0
    swapped = loss_fn(net_params, vgg_params, jax.tree.map(lambda t: t[::-1], targets),
                               training.training_weights(config), setup, images, index)[1]
    assert abs(float(swapped["style"]) - float(terms["style"])) > 1e-3 * float(terms["style"])


def assert_same_targets(a, b):
    """Style targets of one layer (a Gram matrix, W2's moments: any pytree of arrays) alike."""
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)


def targets_of(parts, setup):
    """One style image's targets from its :func:`style_parts` (Gram's are the parts; W2's are made
    from the moments), as stylize makes them."""
    if setup.objective.style_loss == "gram":
        return parts
    return statistic_targets([parts], (1.0,), setup.objective, {}, False)


@pytest.mark.parametrize("style_loss", ["gram", "w2"])
def test_targets_of_two_styles_are_stacked(random_vgg, style_loss):
    _, setup, vgg_params = build(random_vgg, styles=2, style_loss=style_loss)
    big = smooth_image(64, 48, 9)  # resized so that its longer side is the style size
    stacked = training.style_targets_for_training(vgg_params, [style_images(1)[0], big], setup, SIZE)
    alone = [targets_of(style_parts_jit(vgg_params, jnp.asarray(style_images(1)[0]), objective=setup.objective), setup),
             targets_of(style_parts_jit(vgg_params, resize(jnp.asarray(big), (32, 24)), objective=setup.objective),
                        setup)]
    for name in setup.objective.style_layers:
        assert all(leaf.shape[0] == 2 for leaf in jax.tree.leaves(stacked[name]))
        for i in range(2):
            assert_same_targets(jax.tree.map(lambda leaf, i=i: leaf[i], stacked[name]), alone[i][name])
    first = jax.tree.leaves(stacked["relu1_1"])[0]
    assert not np.allclose(first[0], first[1])
    with pytest.raises(ValueError, match="expected 2 style images"):
        training.style_targets_for_training(vgg_params, [big], setup, SIZE)
    with pytest.raises(ValueError, match="style image 1 at 1 px"):
        training.style_targets_for_training(vgg_params, [big, big], setup, SIZE, style_size=1)


def test_sliced_targets_are_for_the_training_size(random_vgg):
    config, setup, vgg_params = build(random_vgg, style_loss="sliced")
    targets = training.style_targets_for_training(vgg_params, style_images(1), setup, SIZE)
    assert targets["relu1_1"]["sorted"].shape[:2] == (1, SIZE * SIZE)
    net_params = init_network(jax.random.key(0), setup.network, SIZE)
    with pytest.raises(ValueError, match="the size the sliced targets were made for, got 16x16 px"):
        loss_fn(net_params, vgg_params, targets, training.training_weights(config), setup,
                         contents(1)[:, :16, :16], np.zeros(1, np.int32))


def test_setup_refuses_what_has_no_single_value_in_training(random_vgg):
    for options, message in (({"preserve_colors": "histogram"}, "expected preserve_colors None or 'luminance'"),
                             ({"scales": (16,)}, "expected no coarse-to-fine scales"),
                             ({"style_blend": (1, 2)}, "expected no style blend weights")):
        with pytest.raises(ValueError, match=message) as info:
            build(random_vgg, **options)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="expected temporal_weight to be a finite number >= 0"):
        build(random_vgg, temporal_weight=-1.0)


def test_luminance_trains_on_grey_and_applies_with_the_chroma_back(random_vgg):
    config, setup, vgg_params = build(random_vgg, preserve_colors="luminance")
    targets = training.style_targets_for_training(vgg_params, style_images(1), setup, SIZE)
    grey_style = np.repeat((style_images(1)[0] @ RGB_TO_YIQ[0])[..., None], 3, -1)
    expected = targets_of(style_parts_jit(vgg_params, jnp.asarray(grey_style, jnp.float32), objective=setup.objective),
                          setup)
    assert_same_targets(jax.tree.map(lambda leaf: leaf[0], targets["relu1_1"]), expected["relu1_1"])
    net_params = init_network(jax.random.key(0), setup.network, SIZE)
    images, mix = contents(2), np.ones((2, 1), np.float32)
    out = training.apply_network(net_params, setup.network, images, mix, preserve_colors="luminance")
    raw = setup.network.apply({"params": net_params}, training.network_input(images, "luminance"), mix)
    inside = np.all((out > 0.01) & (out < 0.99), axis=-1)  # where the recombination did not clip
    assert inside.mean() > 0.5
    np.testing.assert_allclose((out @ RGB_TO_YIQ[0])[inside], (raw @ RGB_TO_YIQ[0])[inside], atol=1e-5)
    np.testing.assert_allclose((out @ RGB_TO_YIQ[1:].T)[inside], (images @ RGB_TO_YIQ[1:].T)[inside], atol=1e-5)
    plain = training.apply_network(net_params, setup.network, images, mix)
    np.testing.assert_allclose(plain, setup.network.apply({"params": net_params}, images, mix), atol=1e-6)
    with pytest.raises(ValueError, match=r"expected a style mix \[2, 1\]"):
        training.apply_network(net_params, setup.network, images, np.ones((2, 3), np.float32))


def test_random_flows_are_smooth_bounded_and_zero_at_zero_shift():
    flows = [np.asarray(random_flow(jax.random.key(k), (32, 48), max_shift=0.05)) for k in range(4)]
    for flow in flows:
        assert flow.shape == (32, 48, 2) and 0.05 * 48 * 0.25 - 1e-4 <= np.abs(flow).max() <= 0.05 * 48 + 1e-4
        assert np.abs(np.diff(flow, axis=0)).max() < 0.5 and np.abs(np.diff(flow, axis=1)).max() < 0.5
    assert not np.allclose(flows[0], flows[1])
    assert not np.any(np.asarray(random_flow(jax.random.key(0), (32, 48), max_shift=0.0)))


def test_warp_of_a_translation_is_a_roll_and_its_error_zero():
    image = jnp.asarray(smooth_image(24, 32, 3))
    flow = jnp.broadcast_to(jnp.asarray([3.0, -2.0]), (24, 32, 2))  # x + 3, y - 2
    valid = in_frame(flow).astype(jnp.float32)
    rolled = np.roll(np.asarray(image), (2, -3), axis=(0, 1))
    np.testing.assert_allclose(warp(image, flow)[2:, :-3], rolled[2:, :-3], atol=1e-6)
    assert float(valid.sum()) == 22 * 29 and not valid[0].any() and not valid[:, -3:].any()
    # a network that commutes with the motion (here: the identity) has no temporal error
    assert float(temporal_error(jnp.asarray(rolled), image, flow, valid)) < 1e-12
    assert float(temporal_error(image, image, flow, valid)) > 1e-3
    moved, flow, valid = warped_input(jax.random.key(0), image, max_shift=0.1, noise=0.0)
    np.testing.assert_array_equal(valid, in_frame(flow))
    np.testing.assert_allclose(moved, warp(image, flow), atol=1e-6)


def test_temporal_term(random_vgg):
    config, setup, vgg_params = build(random_vgg, temporal_weight=2.0, content_weight=0.0, style_weight=0.0)
    targets = training.style_targets_for_training(vgg_params, style_images(1), setup, SIZE)
    weights = training.training_weights(config, temporal_weight=2.0)
    net_params = init_network(jax.random.key(0), setup.network, SIZE)
    images, index, key = contents(2), np.zeros(2, np.int32), jax.random.key(5)
    still = dataclasses.replace(setup, max_shift=0.0, flow_noise=0.0)
    assert float(loss_fn(net_params, vgg_params, targets, weights, still, images, index, key)[0]) < 1e-12
    (loss, terms), grads = jax.jit(jax.value_and_grad(training.loss_fn, has_aux=True), static_argnums=(4,))(
        net_params, vgg_params, targets, weights, setup, images, index, key)
    assert float(loss) == pytest.approx(float(terms["temporal"])) and float(loss) > 0
    leaves = jax.tree.leaves(grads)
    assert all(np.isfinite(g).all() for g in leaves) and any(np.abs(g).max() > 0 for g in leaves)
    with pytest.raises(ValueError, match="expected a PRNG key"):
        loss_fn(net_params, vgg_params, targets, weights, setup, images, index)


def test_step_compiles_once_and_a_nonfinite_step_changes_nothing(random_vgg):
    config, setup, vgg_params = build(random_vgg)
    targets = training.style_targets_for_training(vgg_params, style_images(1), setup, SIZE)
    weights, optimizer, mesh = training.training_weights(config), training.make_optimizer(), training.training_mesh()
    state = training.init_train_state(jax.random.key(0), setup, optimizer, SIZE)
    step = dict(setup=setup, optimizer=optimizer, mesh=mesh)
    state, _ = training.train_step(state, vgg_params, targets, weights, contents(2), np.zeros(2, np.int32),
                                   jax.random.key(0), **step)
    compiled = training.compiled_step._cache_size()
    before = jax.tree.map(np.array, state)
    bad = contents(2, seed=3)
    bad[1, 4, 4] = np.nan
    state, metrics = training.train_step(state, vgg_params, targets, weights, bad, np.zeros(2, np.int32),
                                         jax.random.key(0), **step)
    assert training.compiled_step._cache_size() == compiled
    assert not bool(metrics["finite"]) and int(state.step) == 2
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.array, state.params), before.params)
    with pytest.raises(ValueError, match=r"expected style indices in \[0, 1\), got \[0, 1\]"):
        training.train_step(state, vgg_params, targets, weights, contents(2), np.array([0, 1]), jax.random.key(0),
                            **step)


def test_optimizer_options():
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.ones(3)}
    optimizer = training.make_optimizer(0.1, warmup=2)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    assert float(jnp.abs(updates["w"]).max()) == 0.0  # the warmup starts from 0
    optimizer = training.make_optimizer(0.1, steps=10, warmup=0, clip_norm=1.0)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.1, rtol=1e-4)
    for options, message in (({"learning_rate": 0.0}, "expected learning_rate"), ({"warmup": -1}, "expected warmup"),
                             ({"steps": 5, "warmup": 5}, "expected steps"), ({"clip_norm": 0}, "expected clip_norm")):
        with pytest.raises(ValueError, match=message):
            training.make_optimizer(**options)


def test_global_batch_on_one_process():
    mesh = training.training_mesh()
    batch = training.global_batch({"images": contents(2), "index": np.zeros(2, np.int32)}, mesh)
    assert batch["images"].sharding.spec == training.PartitionSpec(training.DATA)
    np.testing.assert_array_equal(batch["images"], contents(2))


DEVICES_SCRIPT = """
import json
import jax, numpy as np, optax
from jaxstyle.config import StyleConfig
from jaxstyle.engine import training
from jaxstyle.model.transformer import TransformerNet
from jaxstyle.model.vgg import CAFFE_PREPROCESSING
from jaxstyle.weights.formats import VGGWeights
from tests.helpers import random_layers, smooth_image

layers = random_layers(0)
layers["conv1_1"] = (layers["conv1_1"][0] / 64.0, layers["conv1_1"][1])
vgg = VGGWeights(layers, CAFFE_PREPROCESSING, "random-test", "0" * 64).to_vgg("avg")
config = StyleConfig(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), conv="direct",
                     style_weight=1.0, style_loss="gram")
setup = training.TrainingSetup.build(config, vgg, TransformerNet(width=4, styles=2, residual_blocks=1),
                                     temporal_weight=0.5)
vgg_params = setup.objective.params(vgg)
targets = training.style_targets_for_training(vgg_params, [smooth_image(32, 24, 40), smooth_image(20, 32, 41)],
                                              setup, 32)
weights = training.training_weights(config, temporal_weight=0.5)
optimizer = optax.sgd(1e-2)
images = np.stack([smooth_image(32, 32, i) for i in range(8)])
index = np.array([0, 1, 1, 0], np.int32)
out = {}
for n in (1, 2, 4):
    mesh = training.training_mesh(jax.devices()[:n])
    state = training.init_train_state(jax.random.key(0), setup, optimizer, 32)
    start = jax.tree.map(np.array, state.params)
    for step in range(3):
        batch = training.global_batch((images[4 * (step % 2):][:4], index), mesh)
        state, metrics = training.train_step(state, vgg_params, targets, weights, *batch, jax.random.key(1),
                                             setup=setup, optimizer=optimizer, mesh=mesh)
    leaf = state.params["conv_in"]["kernel"]
    paths = jax.tree_util.tree_leaves_with_path(state.params)
    output = training.apply_network(state.params, setup.network, images[:4], np.eye(2, dtype=np.float32)[index])
    out[n] = {"params": {jax.tree_util.keystr(k): np.asarray(p).tolist() for k, p in paths},
              "output": np.asarray(output).tolist(),
              "moved": max(float(np.abs(np.asarray(a) - b).max()) for a, b in
                           zip(jax.tree.leaves(state.params), jax.tree.leaves(start))),
              "loss": float(metrics["loss"]), "temporal": float(metrics["temporal"]),
              "devices": len(leaf.sharding.device_set), "replicated": leaf.sharding.is_fully_replicated}
try:
    training.train_step(state, vgg_params, targets, weights, images[:6], np.zeros(6, np.int32), jax.random.key(1),
                        setup=setup, optimizer=optimizer, mesh=training.training_mesh())
except ValueError as error:
    out["error"] = str(error)
print("RESULT" + json.dumps(out))
"""


def test_one_two_and_four_devices_train_alike():
    """Data parallel on fake CPU devices: the same parameters and outputs after 3 steps (to float
    rounding), the temporal term's flows included; a batch the devices do not divide is refused in
    one line. Plain SGD, so that what is compared is the averaged gradient: Adam divides each step
    by the gradient's running RMS, which turns rounding noise in a gradient that is 0 in exact
    arithmetic (the residual blocks' last shifts, which the instance norm after the upsampling
    removes) into steps of the full learning rate. Average pooling (a rounding difference can move
    max pooling's argmax, and the gradient with it) and the Gram loss (W2's Newton-Schulz iterations
    amplify rounding) keep rounding at rounding."""
    result = run_on_fake_cpu_devices(DEVICES_SCRIPT, devices=4)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.split("RESULT")[-1])
    one = out["1"]
    assert one["moved"] > 1e-3 and one["temporal"] > 0
    for n in ("2", "4"):
        assert out[n]["devices"] == int(n) and out[n]["replicated"]
        np.testing.assert_allclose(out[n]["loss"], one["loss"], rtol=1e-5)
        np.testing.assert_allclose(out[n]["output"], one["output"], atol=1e-5, rtol=0)
        for name, value in one["params"].items():  # moved by up to 2.5e-3; rounding is 1e-7
            np.testing.assert_allclose(out[n]["params"][name], value, atol=2e-6, rtol=0, err_msg=name)
    assert out["error"] == "expected a global batch divisible by the 4 devices of the mesh, got 6"
