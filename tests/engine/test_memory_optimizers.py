"""The optimizer's memory read from its own state: a ``module:factory`` optimizer estimated and planned
like the named optimizer it equals (not as L-BFGS with the full history), and refusals that name every
option that would make the run fit (a shorter L-BFGS history, Adam, a smaller size)."""

from __future__ import annotations

import dataclasses

import numpy as np
import optax
import pytest
from PIL import Image

from jaxstyle import StyleConfig
from jaxstyle.cli import main
from jaxstyle.engine import memory, planner
from jaxstyle.objective.blocks import Blocking
from jaxstyle.optim import lbfgs, optimizer_from_factory

GiB = 1 << 30
HERE = "tests.engine.test_memory_optimizers"


def adam_factory():  # the factories below are named as module:factory, as on the command line
    return optax.adam(0.02)


def optax_lbfgs_factory():
    return optax.lbfgs()  # 10 pairs


def own_lbfgs_factory():
    return lbfgs(memory=50)


def sgd_factory():
    return optax.sgd(0.1)  # no state


def factory(name: str) -> StyleConfig:
    return StyleConfig(optimizer=optimizer_from_factory(f"{HERE}:{name}"))


@pytest.fixture()
def free(monkeypatch):
    """Pretend this machine has ``free.bytes`` free."""
    class Free:
        bytes = 64 * GiB

    monkeypatch.setattr(memory, "available_bytes", lambda device=None: (Free.bytes, "test memory"))
    return Free


def test_a_factory_is_estimated_from_its_state():
    adam, named_lbfgs = StyleConfig(optimizer="adam"), StyleConfig()
    assert memory.estimate_bytes(384, 512, factory("adam_factory")) == memory.estimate_bytes(384, 512, adam)
    assert memory.estimate_bytes(384, 512, factory("own_lbfgs_factory")) == memory.estimate_bytes(384, 512, named_lbfgs)
    assert memory.estimate_bytes(384, 512, factory("sgd_factory")) < memory.estimate_bytes(384, 512, adam)
    # in images: Adam's two moments; L-BFGS's pairs (with their temporaries) and 2-4 image-sized arrays
    assert memory.optimizer_arrays(384, 512, adam) == pytest.approx(2)
    assert memory.optimizer_arrays(384, 512, named_lbfgs) == pytest.approx(4 * 50 + 4)
    assert memory.optimizer_arrays(384, 512, factory("optax_lbfgs_factory")) == pytest.approx(4 * 10 + 3)
    assert memory.optimizer_arrays(384, 512, factory("sgd_factory")) == 0
    blocked = memory.optimizer_arrays(384, 512, named_lbfgs, per_pair=memory.BLOCK_LBFGS_ARRAYS_PER_PAIR)
    assert blocked == pytest.approx(6 * 50 + 4)


def test_plan_at_4096_with_a_factory_adam_fits_like_adam(free, weights_file, tmp_path, monkeypatch, capsys):
    free.bytes = 16 * GiB
    own = StyleConfig(optimizer=optimizer_from_factory(f"{HERE}:adam_factory"), scales=(1024, 2048))
    plan = planner.plan_evaluation(3072, 4096, own)
    expected = planner.plan_evaluation(3072, 4096, StyleConfig(optimizer="adam", scales=(1024, 2048)))
    assert (plan.evaluation, plan.need, plan.notes) == (expected.evaluation, expected.need, expected.notes)
    monkeypatch.setenv("JAXSTYLE_WEIGHTS", str(weights_file))
    content = tmp_path / "c.png"
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(content)
    printed = []
    for optimizer in ("adam", f"{HERE}:adam_factory"):
        assert main(["plan", str(content), "--size", "4096", "--optimizer", optimizer]) == 0
        printed.append(capsys.readouterr().out.replace(optimizer, "OPTIMIZER"))
    assert printed[0] == printed[1] and "11.0 GiB" in printed[0] and "fits" in printed[0]


def _message(excinfo) -> str:
    return str(excinfo.value)


def test_a_refusal_names_the_history_that_fits_and_adam(free):
    config = StyleConfig()  # L-BFGS, 50 pairs
    free.bytes = memory.estimate_bytes(384, 512, dataclasses.replace(config, lbfgs_memory=20))
    assert memory.estimate_bytes(384, 512, dataclasses.replace(config, lbfgs_memory=21)) > free.bytes
    with pytest.raises(memory.WontFitError) as caught:
        memory.check_fits(384, 512, config, "c.jpg")
    assert "try --lbfgs-memory 20, --optimizer adam (it keeps no history), a smaller --size" in _message(caught)
    with pytest.raises(memory.WontFitError, match="try --lbfgs-memory 20, --optimizer adam"):
        planner.plan_evaluation(384, 512, config, block_size=None)
    with pytest.raises(memory.WontFitError) as caught:  # a factory's history is its own: Adam only
        memory.check_fits(384, 512, factory("own_lbfgs_factory"), "c.jpg")
    assert "--optimizer adam" in _message(caught) and "--lbfgs-memory" not in _message(caught)
    free.bytes = memory.estimate_bytes(384, 512, StyleConfig(optimizer="adam")) - 1  # nothing but the size helps
    with pytest.raises(memory.WontFitError) as caught:
        memory.check_fits(384, 512, config, "c.jpg")
    assert "try a smaller --size" in _message(caught) and "--optimizer" not in _message(caught)


def test_a_sharded_refusal_names_them_too(free):
    class FakeAccelerator:
        platform, device_kind = "gpu", "fake GPU"

    import jax

    config = StyleConfig()
    free.bytes = memory.estimate_bytes(192, 512, dataclasses.replace(config, lbfgs_memory=30))
    with pytest.raises(memory.WontFitError, match="try --lbfgs-memory 30, --optimizer adam .*, more devices"):
        memory.check_fits_sharded(384, 512, config, "c.jpg", (2, 1), [FakeAccelerator()] * 2)
    cpu = jax.local_devices()[0]
    free.bytes = 2 * memory.estimate_bytes(192, 512, dataclasses.replace(config, lbfgs_memory=30))
    with pytest.raises(memory.WontFitError, match="try --lbfgs-memory 30, --optimizer adam .*, a smaller --size"):
        memory.check_fits_sharded(384, 512, config, "c.jpg", (2, 1), [cpu, cpu])


def test_block_by_block_the_refusal_names_a_history_too_short_to_plan(free):
    """The planner shrinks a named L-BFGS's history down to ``MIN_HISTORY`` pairs; fewer it leaves to
    the user, and says how many would fit."""
    config = StyleConfig()
    blocks = Blocking(256, per_chunk=1)
    need = [memory.estimate_block_bytes(3072, 4096, dataclasses.replace(config, lbfgs_memory=n), blocks)
            for n in (3, 4)]
    assert planner.MIN_HISTORY > 3
    free.bytes = (need[0] + need[1]) // 2  # forced blocks are planned against all of it
    with pytest.raises(memory.WontFitError) as caught:
        planner.plan_evaluation(3072, 4096, config, block_size=256)
    assert "even block by block" in _message(caught)
    assert "try --lbfgs-memory 3, --optimizer adam (it keeps no history), a smaller --size" in _message(caught)


def test_the_history_of_a_factory_is_not_shrunk(free):
    free.bytes = 24 * GiB  # a named L-BFGS is planned with 11 pairs here (test_planner.py)
    own = factory("own_lbfgs_factory")
    with pytest.raises(memory.WontFitError) as caught:
        planner.plan_evaluation(3072, 4096, dataclasses.replace(own, scales=(1024, 2048)))
    assert "try --optimizer adam (it keeps no history), a smaller --size" in _message(caught)
    assert "--lbfgs-memory" not in _message(caught)
    plan = planner.plan_evaluation(1536, 2048, own)  # fits as it is: planned with the state it has
    assert plan.config == own and not any("pairs instead of" in n for n in plan.notes)
