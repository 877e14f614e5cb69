"""style_problem and optimizers brought by the user: optax transformations, Optimizers, module:factory."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

from jaxstyle import StyleConfig, style_problem, stylize, stylize_batch
from jaxstyle.cli import main
from jaxstyle.optim import Optimizer, adam, init_loop, make_optimizer, optimizer_from_factory, run_steps
from tests.helpers import smooth_image

SMALL = dict(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), iterations=5, style_weight=1.0,
             style_loss="gram")


@pytest.fixture(scope="module")
def pair():
    return smooth_image(32, 40, seed=20), smooth_image(36, 36, seed=21)


@pytest.mark.parametrize("extra", [{}, {"preserve_colors": "luminance", "tv_weight": 1e-3},
                                   {"style_blend": (0.7, 0.3)}], ids=["plain", "luminance-tv", "two-styles"])
def test_problem_is_the_objective_stylize_minimises(random_vgg, pair, extra):
    content, style = pair
    styles = [style, smooth_image(30, 44, seed=22)] if "style_blend" in extra else style
    config = StyleConfig(**SMALL, **extra)
    result = stylize(content, styles, config=config, vgg=random_vgg)
    problem = style_problem(content, styles, config=config, vgg=random_vgg)
    assert problem.x0.shape == content.shape and problem.x0.dtype == jnp.float32
    loss = jax.jit(problem.loss)
    np.testing.assert_allclose(loss(problem.x0), result.loss_history[0], rtol=1e-5)
    # The same optimizer on problem.loss takes the same path: equal losses at the end.
    optimizer = make_optimizer(config.optimizer, learning_rate=config.learning_rate, memory=config.lbfgs_memory)
    state, history = jax.jit(lambda x: run_steps(optimizer, problem.loss, init_loop(optimizer, problem.loss, x),
                                                 jnp.int32(5), max_steps=5))(problem.x0)
    np.testing.assert_allclose(np.asarray(history), result.loss_history, rtol=1e-4)
    terms = problem.terms(state.x)
    np.testing.assert_allclose(float(terms["total"]), result.losses["total"], rtol=1e-4)
    assert set(terms) == {"content", "style", "tv", "range", "total"}
    np.testing.assert_allclose(problem.image(state.x), result.image, atol=1e-5)
    grads = jax.vmap(jax.grad(problem.loss))(jnp.stack([problem.x0, problem.x0]))  # vmap and grad
    assert grads.shape == (2, *content.shape) and bool(jnp.all(jnp.isfinite(grads)))


def test_problem_refuses_scales(random_vgg, pair):
    with pytest.raises(ValueError, match="single-scale"):
        style_problem(*pair, config=StyleConfig(**SMALL, scales=(16,)), vgg=random_vgg)


def test_custom_optax_chain_lowers_the_loss(random_vgg, pair):
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.002))
    result = stylize(*pair, config=StyleConfig(**SMALL, optimizer=tx), vgg=random_vgg, callback_every=2)
    assert result.status == "done" and result.steps == 5
    assert result.losses["total"] < result.loss_history[0]


def test_optax_lbfgs_with_its_line_search_runs_in_the_loop(random_vgg, pair):
    result = stylize(*pair, config=StyleConfig(**SMALL, optimizer=optax.lbfgs()), vgg=random_vgg)
    assert result.steps == 5 and result.losses["total"] < result.loss_history[0]


def test_user_optimizer_under_stylize_batch(random_vgg, pair):
    calls = []

    def step(x, state, loss_fn):  # plain gradient descent, written by a user
        value, grad = jax.value_and_grad(loss_fn)(x)
        calls.append(1)  # traced once per compile, not per step
        return x - 1e-3 * grad, state, value, jnp.array(True)

    mine = Optimizer(init=lambda x, loss_fn: jnp.zeros(()), step=step, name="gd")
    content, style = pair
    results = stylize_batch(np.stack([content, content[::-1]]), [style, style], vgg=random_vgg,
                            config=StyleConfig(**SMALL, optimizer=mine))
    for r in results:
        assert r.steps == 5 and r.losses["total"] < r.loss_history[0]


def test_config_validation_of_optimizer_objects():
    with pytest.raises(ValueError, match="optax GradientTransformation or a jaxstyle.Optimizer, got int"):
        StyleConfig(optimizer=3)
    with pytest.raises(ValueError, match="learning_rate applies to the named optimizers"):
        StyleConfig(optimizer=optax.adam(0.1), learning_rate=0.1)
    assert StyleConfig(optimizer=adam(learning_rate=0.1)).learning_rate is None


def test_factory_spec():
    assert optimizer_from_factory("tests.optim.optimizer_factories:own_optimizer").name == \
        "tests.optim.optimizer_factories:own_optimizer"
    assert isinstance(optimizer_from_factory("tests.optim.optimizer_factories:clipped_adam"), Optimizer)
    for spec, message in [("tests.optim.optimizer_factories:not_an_optimizer", "got int"),
                          ("tests.optim.optimizer_factories:missing", "has no missing"),
                          ("no_such_module_here:f", "cannot import no_such_module_here"),
                          ("nocolon", "package.module:factory")]:
        with pytest.raises(ValueError, match=message):
            optimizer_from_factory(spec)


def test_cli_module_factory(weights_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAXSTYLE_WEIGHTS", str(weights_file))
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    for path, seed in ((content, 1), (style, 2)):
        Image.fromarray((smooth_image(32, 32, seed) * 255).astype(np.uint8)).save(path)
    out = tmp_path / "out.png"
    args = ["stylize", str(content), str(style), "-o", str(out), "--size", "32", "--iterations", "4",
            "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1", "--style-weight", "1"]
    assert main([*args, "--optimizer", "tests.optim.optimizer_factories:clipped_adam"]) == 0
    assert Image.open(out).size == (32, 32)
    assert main([*args, "--overwrite", "--optimizer", "tests.optim.optimizer_factories:not_an_optimizer"]) == 2
    assert "got int" in capsys.readouterr().err


def test_steering_the_weights_compiles_nothing_and_keeps_the_step_count(random_vgg):
    from jaxstyle.engine.run import run_chunk
    from jaxstyle.engine.stylize import stylize
    from tests.helpers import smooth_image

    content, style = smooth_image(32, 32, 1), smooth_image(32, 32, 2)
    config = StyleConfig(iterations=30, style_weight=1e-1)
    plain = stylize(content, style, vgg=random_vgg, config=config, callback_every=10, track_terms=True)
    compiled = run_chunk._cache_size()
    asked = []

    def steer(step):
        asked.append(step)
        return {"style_weight": 10.0} if step == 10 else None

    steered = stylize(content, style, vgg=random_vgg, config=config, callback_every=10, track_terms=True, steer=steer)
    assert run_chunk._cache_size() == compiled  # the same program: the weights are traced
    assert asked == [10, 20, 30]
    assert steered.steps == 30 and len(steered.loss_history) == 30
    ratio = [s["style"] / p["style"] for s, p in zip(steered.term_history, plain.term_history)]
    assert abs(ratio[0] - 1) < 1e-6 and ratio[1] > 10  # the style term weighs 100x from step 10 on
    with pytest.raises(ValueError, match="to steer"):
        stylize(content, style, vgg=random_vgg, config=config, callback_every=10, steer=lambda s: {"seed": 1})
