"""StyleConfig refuses what is not a finite number of the right kind, naming the field."""

from __future__ import annotations

import math

import pytest

from jaxstyle import StyleConfig


@pytest.mark.parametrize("field", ["content_weight", "style_weight", "tv_weight", "learning_rate", "noise_scale",
                                   "init_noise_blend", "content_layer_weights", "style_layer_weights", "style_blend",
                                   "seed", "iterations", "scale_iterations", "lbfgs_memory", "scales"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_config_refuses_non_finite_numbers(field, value):
    kwargs = {"content_layer_weights": (value,), "style_layer_weights": (1.0, value, 1.0, 1.0, 1.0),
              "style_blend": (1.0, value), "scales": (value,)}
    with pytest.raises(ValueError, match=field.replace("_", "[ _]")):
        StyleConfig(**{field: kwargs.get(field, value)})


@pytest.mark.parametrize("seed", [2**63, -(2**63) - 1, 10**30])
def test_config_refuses_seeds_beyond_int64(seed):
    with pytest.raises(ValueError, match="seed"):
        StyleConfig(seed=seed)


def test_video_temporal_term_starts_where_each_mode_has_neighbours():
    from jaxstyle import VideoConfig

    assert VideoConfig(passes=4).temporal_from_pass == 3  # sequential: the second half
    assert VideoConfig(mode="parallel", passes=4).temporal_from_pass == 2  # parallel: every pass with neighbours
    assert VideoConfig(mode="parallel", passes=4, temporal_from_pass=3).temporal_from_pass == 3
    assert VideoConfig(passes=1).temporal_from_pass == 1
