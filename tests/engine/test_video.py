"""The video engine on synthetic clips with known flow (random weights, tiny frames)."""

import numpy as np
import pytest

from jaxstyle.config import StyleConfig, VideoConfig
from jaxstyle.engine.video import MemoryStore, stylize_video
from jaxstyle.jobs.video import temporal_error
from tests.helpers import run_on_fake_cpu_devices, smooth_image

H, W, STEP = 48, 48, 2
# one chunk length (6) everywhere: programs are shared. Gram: these test the video machinery, whose runs are
# compared across devices and modes to float rounding (W2 video: tests/objective/test_style_loss_wiring.py)
CONFIG = StyleConfig(iterations=6, style_weight=1e-1, style_loss="gram")


def pan(frames=5, step=STEP, seed=3):
    """A horizontal pan over a photo-like image: frame i is the crop at x = step * i."""
    big = smooth_image(H, W + step * frames, seed)
    return [big[:, step * i: step * i + W] for i in range(frames)]


def pan_flow(step=STEP):
    """The exact flow of :func:`pan`: frame a(p) = frame b(p + step (a - b))."""
    def flow(a, b):
        f = np.zeros((H, W, 2), np.float32)
        f[..., 0] = step * (a - b)
        return f

    return flow


STYLE = smooth_image(40, 40, 11)


def test_the_temporal_loss_makes_the_output_follow_the_motion(random_vgg):
    frames = pan()
    flow = pan_flow()
    independent = stylize_video(frames, STYLE, vgg=random_vgg, flow=flow, config=CONFIG,
                                video=VideoConfig(mode="parallel", passes=1, first_iterations=6))
    coupled = stylize_video(frames, STYLE, vgg=random_vgg, flow=flow, config=CONFIG,
                            video=VideoConfig(first_iterations=6, temporal_weight=1e6))
    starts = [r.start for r in coupled.records]
    assert starts == ["content", "warped", "warped", "warped", "warped"]
    assert all(r.losses["temporal"] > 0 for r in coupled.records[1:]) and coupled.records[0].losses["temporal"] == 0
    e_independent = temporal_error(independent.frames(5), flow)
    e_coupled = temporal_error(coupled.frames(5), flow)
    assert e_coupled < 0.5 * e_independent, (e_coupled, e_independent)
    assert temporal_error(frames, flow) < 1e-8  # the input follows its own flow exactly


def test_a_scene_cut_starts_the_next_frame_afresh(random_vgg):
    frames = pan(3) + [smooth_image(H, W, 40)[::-1], smooth_image(H, W, 40)[::-1]]
    cut_flows = pan_flow()

    def flow(a, b):  # the pan's flow inside each shot; zero across the cut (as a flow method might say)
        if (a < 3) != (b < 3):
            return np.zeros((H, W, 2), np.float32)
        return cut_flows(a, b)

    result = stylize_video(frames, STYLE, vgg=random_vgg, flow=flow, config=CONFIG,
                           video=VideoConfig(first_iterations=12), chunk=6)
    assert result.cuts == [3]
    record = result.records[3]
    assert record.start == "cut" and record.iterations == 12 and record.losses["temporal"] == 0.0
    assert result.records[4].start == "warped" and result.records[4].losses["temporal"] > 0
    assert result.records[1].matched > 0.9 and result.records[3].matched < 0.3


def test_an_exposure_step_is_not_a_cut(random_vgg):
    """A brightness step (auto-exposure) keeps the temporal term, where a cut would drop it and flicker."""
    frames = [np.clip(f + (0.12 if i >= 2 else 0.0), 0.0, 1.0) for i, f in enumerate(pan(4))]
    result = stylize_video(frames, STYLE, vgg=random_vgg, flow=pan_flow(), config=CONFIG,
                           video=VideoConfig(first_iterations=6, temporal_weight=1e6))
    assert result.cuts == [] and [r.start for r in result.records] == ["content"] + ["warped"] * 3
    assert result.records[2].matched > 0.9 and result.records[2].losses["temporal"] > 0


def test_a_resumed_run_computes_only_the_missing_frames_and_gives_the_same_video(random_vgg):
    frames, flow = pan(3), pan_flow()
    video = VideoConfig(first_iterations=6, relative_frames=(1, 2))
    full = stylize_video(frames, STYLE, vgg=random_vgg, flow=flow, config=CONFIG, video=video)
    store = MemoryStore()
    for i in range(2):
        store.frames[0, i] = full.store.get(0, i)
    resumed = stylize_video(frames, STYLE, vgg=random_vgg, flow=flow, config=CONFIG, video=video, store=store)
    assert [r.start for r in resumed.records] == ["resumed", "resumed", "warped"]
    for i in range(3):
        np.testing.assert_allclose(resumed.store.get(0, i), full.store.get(0, i), atol=1e-5)


def test_multi_pass_alternates_direction_and_blends(random_vgg):
    frames, flow = pan(3), pan_flow(step=2.5)  # half a pixel off: neighbours' warps do not agree exactly
    result = stylize_video(frames, STYLE, vgg=random_vgg, flow=flow,
                           config=StyleConfig(iterations=6, style_weight=1e-1, style_loss="gram"),
                           video=VideoConfig(passes=3, first_iterations=6))
    order = [(r.pass_index, r.index, r.start) for r in result.records]
    assert order[:3] == [(0, 0, "content"), (0, 1, "warped"), (0, 2, "warped")]
    assert [i for p, i, _ in order[3:6]] == [2, 1, 0] and [i for p, i, _ in order[6:]] == [0, 1, 2]
    assert all(s == "blend" for _, _, s in order[3:])
    temporal = [r.losses["temporal"] for r in result.records]
    assert temporal[:3] == [0.0] * 3 and temporal[3] == 0.0  # pass 1; pass 2 starts at the last frame
    # from pass 3 // 2 + 1 = 2 on, towards the neighbour in the direction of the pass (frame 0 has none forwards)
    assert all(temporal[k] > 0 for k in (4, 5, 7, 8)) and temporal[6] == 0.0
    assert len(result.frames(3)) == 3


def test_parallel_passes_pull_neighbours_together(random_vgg):
    frames, flow = pan(4), pan_flow()
    # independent frames that differ
    config = StyleConfig(iterations=6, style_weight=1e-1, init="noise", style_loss="gram")
    one = stylize_video(frames, STYLE, vgg=random_vgg, flow=flow, config=config,
                        video=VideoConfig(mode="parallel", passes=1, first_iterations=6), group=2)
    three = stylize_video(frames, STYLE, vgg=random_vgg, flow=flow, config=config,
                          video=VideoConfig(mode="parallel", passes=3, first_iterations=6, temporal_weight=1e6),
                          group=2)
    assert temporal_error(three.frames(4), flow) < 0.7 * temporal_error(one.frames(4), flow)
    assert [r.start for r in three.records if r.pass_index == 2] == ["blend"] * 4


def test_parallel_passes_take_the_temporal_term_from_temporal_from_pass(random_vgg):
    frames, flow = pan(3), pan_flow()
    result = stylize_video(frames, STYLE, vgg=random_vgg, flow=flow, config=CONFIG, group=3,
                           video=VideoConfig(mode="parallel", passes=3, first_iterations=6, temporal_weight=1e6,
                                             temporal_from_pass=3))
    temporal = {(r.pass_index, r.index): r.losses["temporal"] for r in result.records}
    assert [temporal[1, i] for i in range(3)] == [0.0] * 3  # pass 2: blended starts, no temporal term yet
    assert all(temporal[2, i] > 0 for i in range(3))
    assert [r.start for r in result.records if r.pass_index > 0] == ["blend"] * 6


def test_video_needs_frames_and_refuses_scales(random_vgg):
    with pytest.raises(ValueError, match="at least one frame"):
        stylize_video([], STYLE, vgg=random_vgg, flow=pan_flow())
    with pytest.raises(ValueError, match="one scale"):
        stylize_video(pan(2), STYLE, vgg=random_vgg, flow=pan_flow(), config=StyleConfig(scales=(32,)))


@pytest.mark.slow
def test_parallel_mode_shards_frames_over_devices_and_matches_one_device():
    script = """
import numpy as np, jax
from jaxstyle.config import StyleConfig, VideoConfig
from jaxstyle.engine.sharding import batch_mesh
from jaxstyle.engine.video import stylize_video
from tests.engine.test_video import pan, pan_flow, STYLE, CONFIG
from tests.helpers import random_layers
from jaxstyle.model.vgg import CAFFE_PREPROCESSING
from jaxstyle.weights.formats import VGGWeights
layers = random_layers(0)
layers["conv1_1"] = (layers["conv1_1"][0] / 64.0, layers["conv1_1"][1])
vgg = VGGWeights(layers, CAFFE_PREPROCESSING, "random-test", "0" * 64).to_vgg("max")
video = VideoConfig(mode="parallel", passes=2, first_iterations=6, temporal_weight=1e6)
frames = pan(4)
mesh = batch_mesh()
assert mesh.devices.size == 4
sharded = stylize_video(frames, STYLE, vgg=vgg, flow=pan_flow(), config=CONFIG, video=video, mesh=mesh)
single = stylize_video(frames, STYLE, vgg=vgg, flow=pan_flow(), config=CONFIG, video=video, group=4)
for a, b in zip(sharded.frames(4), single.frames(4)):
    np.testing.assert_allclose(a, b, atol=2e-3)
print("ok", sharded.seconds, single.seconds)
"""
    result = run_on_fake_cpu_devices(script, devices=4)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok" in result.stdout
