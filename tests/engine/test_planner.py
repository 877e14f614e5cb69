"""The planner: whole image when it fits, else blocks that fit, the L-BFGS history shrunk when even
they do not, Adam suggested when nothing keeps a useful history; forced and forbidden blocks; the
default coarse-to-fine schedule of big outputs; and a blocked run that matches a whole one."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from jaxstyle import StyleConfig
from jaxstyle.engine import memory, planner
from jaxstyle.engine.evaluation import BlockByBlock, WholeImage
from jaxstyle.engine.stylize import stylize
from tests.helpers import smooth_image

GiB = 1 << 30


@pytest.fixture()
def free(monkeypatch):
    """Pretend this machine has ``free.bytes`` free."""
    class Free:
        bytes = 64 * GiB

    monkeypatch.setattr(memory, "available_bytes", lambda device=None: (Free.bytes, "test memory"))
    return Free


def test_whole_image_when_it_fits(free):
    plan = planner.plan_evaluation(768, 1024, StyleConfig())
    assert isinstance(plan.evaluation, WholeImage) and not plan.blocked
    assert plan.config == StyleConfig() and plan.need == memory.estimate_bytes(768, 1024, StyleConfig())


def test_blocks_when_the_whole_image_does_not_fit(free):
    free.bytes = 24 * GiB
    config = StyleConfig(optimizer="adam", scales=(1024, 2048))
    assert memory.estimate_bytes(3072, 4096, config) > 24 * GiB * planner.PLAN_SHARE
    plan = planner.plan_evaluation(3072, 4096, config)
    assert isinstance(plan.evaluation, BlockByBlock) and plan.config == config
    assert plan.need <= 24 * GiB * planner.PLAN_SHARE
    blocking = plan.evaluation.blocking
    # the largest block that fits is chosen, and the coarse stages that fit whole are evaluated whole
    larger = [s for s in planner.BLOCK_SIZES if s > blocking.block_size and s < 4096]
    assert all(memory.estimate_block_bytes(3072, 4096, config, planner.Blocking(s)) > plan.need for s in larger)
    assert blocking.whole_up_to == 1536 * 2048
    assert "block by block" in plan.notes[0] and "whole image needs about" in plan.notes[0]


def test_the_lbfgs_history_shrinks_to_fit_and_the_plan_says_so(free):
    free.bytes = 24 * GiB
    plan = planner.plan_evaluation(3072, 4096, StyleConfig())  # 50 pairs of 4096x3072: ~29 GB alone
    assert plan.blocked and 5 <= plan.config.lbfgs_memory < 50
    assert plan.need <= 24 * GiB * planner.PLAN_SHARE
    assert any(f"{plan.config.lbfgs_memory} pairs instead of 50" in n for n in plan.notes)
    more = StyleConfig(lbfgs_memory=plan.config.lbfgs_memory + 1)
    assert memory.estimate_block_bytes(3072, 4096, more, plan.evaluation.blocking) > 24 * GiB * planner.PLAN_SHARE
    with pytest.warns(UserWarning, match="pairs instead of 50"):  # the API says so, before it starts
        with pytest.raises(AttributeError):  # no network given: it stops right after planning
            stylize(np.zeros((3072, 4096, 3), np.float32), np.zeros((64, 64, 3), np.float32), vgg=None)


def test_nothing_fits_names_adam_and_a_smaller_size(free):
    free.bytes = 24 * GiB
    with pytest.raises(memory.WontFitError, match="even block by block.*--optimizer adam.*a smaller --size"):
        planner.plan_evaluation(6144, 8192, StyleConfig(), what="big.jpg")
    with pytest.raises(memory.WontFitError, match="big.jpg: a 8192x6144 run needs about .* on the whole image"):
        planner.plan_evaluation(6144, 8192, StyleConfig(), block_size=None, what="big.jpg")


def test_a_forced_block_size_is_used_even_where_the_whole_image_fits(free):
    plan = planner.plan_evaluation(768, 1024, StyleConfig(), block_size=512)
    assert plan.blocked and plan.evaluation.blocking.block_size == 512 and plan.evaluation.blocking.whole_up_to == 0
    assert "forced by --block-size" in plan.notes[0] and "2x2 blocks" in plan.notes[0]
    with pytest.raises(ValueError, match="at least 128 px"):  # relu5_1 on Winograd's 64 px grid (this CPU)
        planner.plan_evaluation(768, 1024, StyleConfig(), block_size=100)
    with pytest.raises(ValueError, match="block_size"):
        planner.plan_evaluation(768, 1024, StyleConfig(), block_size="big")


@pytest.mark.parametrize("size,scales", [(4096, (1024, 2048)), (3000, (1500,)), (2048, (1024,)), (1536, ()),
                                         (8192, (1024, 2048, 4096)), (512, ())])
def test_big_outputs_run_coarse_to_fine_by_default(size, scales):
    assert planner.coarse_to_fine_scales(size) == scales


def test_a_blocked_run_follows_the_whole_image_run(random_vgg):
    """Direct convolutions (same rounding on blocks and whole): the same losses step by step. Gram, whose
    blocked sums match to 1e-6 (W2's float32 root to ~5e-5, which 9 L-BFGS steps amplify past 1e-3: W2
    by blocks is tests/objective/test_blocks_w2.py)."""
    config = StyleConfig(iterations=6, style_weight=1.0, tv_weight=1e-3, conv="direct", scales=(40,),
                         scale_iterations=3, style_loss="gram")
    content, style = smooth_image(60, 76, 1), smooth_image(40, 36, 2)
    whole = stylize(content, style, vgg=random_vgg, config=config, block_size=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing shrunk: no warning
        blocked = stylize(content, style, vgg=random_vgg, config=config, block_size=32)
    np.testing.assert_allclose(blocked.loss_history, whole.loss_history, rtol=1e-3)
    np.testing.assert_allclose(blocked.image, whole.image, atol=1e-2)
    assert np.abs(blocked.image - whole.image).mean() < 1e-3
    assert blocked.losses.keys() == whole.losses.keys()
    assert abs(blocked.losses["total"] - whole.losses["total"]) <= 1e-3 * whole.losses["total"]


def test_every_stage_fits_as_it_will_run(free):
    """A coarse stage of one block runs whole: its whole-image estimate must fit too (here 2896 px
    under 3072 px blocks would not: 2048 px blocks split it)."""
    free.bytes = 23e9
    config = StyleConfig(optimizer="adam", scales=(1024, 1448, 2048, 2896))
    plan = planner.plan_evaluation(4096, 4096, config)
    blocking = plan.evaluation.blocking
    for stage in planner.stages(4096, 4096, config):
        need = memory.estimate_block_bytes(*stage.shape, config, blocking)
        assert need <= 23e9 * planner.PLAN_SHARE, (stage.shape, need)
    assert blocking.layout(2896, 2896, config.all_layers, memory.winograd_for(config)) is not None
