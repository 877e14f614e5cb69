"""The content images of a training run (jaxstyle.jobs.training_data): sources, deterministic batches,
unreadable images skipped and counted, prefetching threads."""

from __future__ import annotations

import io
import threading
import time
import uuid

import fsspec
import numpy as np
import pytest
from PIL import Image

from jaxstyle.jobs import training_data
from jaxstyle.jobs.training_data import TrainingData, augment, content_sources, decode_content
from tests.helpers import smooth_image

SIZE = 16


def _save(path, h: int, w: int, seed: int) -> None:
    Image.fromarray((smooth_image(h, w, seed) * 255).astype(np.uint8)).save(path)


@pytest.fixture()
def photos(tmp_path):
    """Six photos of different sizes (PNG and JPEG), one of them in a sub-folder."""
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    for i, (h, w) in enumerate([(32, 48), (48, 32), (40, 40), (24, 40), (36, 60), (50, 30)]):
        _save(folder / ("more" if i == 5 else "") / f"p{i}.{'jpg' if i % 2 else 'png'}", h, w, i)
    return folder


def _names(loader: TrainingData, steps) -> list[str]:
    return [name for step in steps for name in loader.get(step)[1]]


def test_same_seed_same_batches_and_any_step_alone(photos):
    sources = content_sources(photos)
    with TrainingData(sources, SIZE, 4, seed=3, threads=2) as a, TrainingData(sources, SIZE, 4, seed=3) as b, \
            TrainingData(sources, SIZE, 4, seed=3, prefetch=0) as fresh:
        run = [a.get(step) for step in range(6)]
        assert all(np.array_equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(run, map(b.get, range(6))))
        images, names = fresh.get(5)  # a resumed run's first batch
        assert names == run[5][1] and np.array_equal(images, run[5][0])
        assert np.array_equal(fresh.get(np.int64(2))[0], run[2][0])  # and backwards


def test_batch_shape_dtype_and_range(photos):
    with TrainingData(content_sources(photos), 24, 3) as loader:
        images, names = loader.get(0)
    assert images.shape == (3, 24, 24, 3) and images.dtype == np.float32 and len(names) == 3
    assert images.min() >= 0.0 and images.max() <= 1.0 and images.std() > 0.01


def test_each_epoch_shows_every_image_once_in_a_new_order(photos):
    sources = content_sources(photos)
    with TrainingData(sources, SIZE, 3, seed=1) as loader:
        first, second = _names(loader, [0, 1]), _names(loader, [2, 3])
    assert sorted(first) == sorted(second) == sorted(map(str, sources)) and first != second
    with TrainingData(sources, SIZE, 4, seed=1) as loader:  # batch 1 straddles the two epochs
        names = _names(loader, range(3))
    assert sorted(names[:6]) == sorted(names[6:]) == sorted(map(str, sources))


def test_different_seeds_differ(photos):
    sources = content_sources(photos)
    with TrainingData(sources, SIZE, 6, seed=0) as a, TrainingData(sources, SIZE, 6, seed=1) as b:
        (x, x_names), (y, y_names) = a.get(0), b.get(0)
    assert x_names != y_names and sorted(x_names) == sorted(y_names)
    assert not np.allclose(x, y)


def test_crops_differ_between_steps_of_one_image(tmp_path):
    _save(tmp_path / "only.png", 64, 96, 0)
    with TrainingData([tmp_path / "only.png"], SIZE, 2, seed=0) as loader:
        batches = [loader.get(step)[0] for step in range(3)]
    crops = np.concatenate(batches)
    assert all(not np.allclose(crops[0], crop) for crop in crops[1:])


def test_process_shares_concatenate_to_the_global_batch(photos):
    sources = content_sources(photos)
    with TrainingData(sources, SIZE, 4, seed=2) as whole:
        expected = [whole.get(step) for step in range(3)]
    shares = [TrainingData(sources, SIZE, 4, seed=2, process_index=i, process_count=2) for i in range(2)]
    for step, (images, names) in enumerate(expected):
        parts = [share.get(step) for share in shares]
        assert [p[0].shape[0] for p in parts] == [2, 2]
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), images)
        assert parts[0][1] + parts[1][1] == names
    for share in shares:
        share.close()


@pytest.mark.parametrize("kwargs, message", [
    ({"batch": 3, "process_count": 2}, "divisible by the 2 processes"),
    ({"process_index": 2, "process_count": 2}, "process index < 2"),
    ({"batch": 0}, "batch >= 1"),
    ({"threads": 0}, "threads >= 1"),
    ({"seed": 1.5}, "integer seed"),
])
def test_bad_settings_are_one_line_errors(photos, kwargs, message):
    settings = {"size": SIZE, "batch": 4} | kwargs
    with pytest.raises(ValueError, match=message) as caught:
        TrainingData(content_sources(photos), **settings)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="at least one content image"):
        TrainingData([], SIZE, 2)


_DAMAGED = {"truncated.jpg": "corrupt", "notes.jpg": "not an image", "empty.png": "0 bytes", "garbled.png": "corrupt",
            "icon.png": "16 px"}  # unusable files; what the reason for each says


def _damage(folder) -> None:
    jpeg, png = (folder / "p1.jpg").read_bytes(), (folder / "p2.png").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[:len(jpeg) // 3])
    (folder / "notes.jpg").write_text("shopping list: eggs, milk\n")
    (folder / "empty.png").write_bytes(b"")
    (folder / "garbled.png").write_bytes(png[:60] + bytes(200) + png[260:])  # zeros in the pixel data
    _save(folder / "icon.png", 12, 40, 9)


def test_unreadable_images_are_skipped_counted_once_and_replaced_by_the_next(photos):
    for i, name in enumerate(_DAMAGED):  # good at first: their positions in the order are seen
        _save(photos / name, 32, 32, 10 + i)
    sources = content_sources(photos)
    with TrainingData(sources, SIZE, 1, seed=4) as loader:
        order = _names(loader, range(60))
    assert loader.skipped == []
    _damage(photos)
    bad = {str(photos / name) for name in _DAMAGED}
    with TrainingData(sources, SIZE, 5, seed=4, threads=3) as loader:
        names = _names(loader, range(6))
        skipped = loader.skipped
    assert [name for name, _ in skipped] == sorted(bad)  # each once, though met in several epochs
    for name, reason in skipped:
        assert _DAMAGED[name.rsplit("/", 1)[1]] in reason and "\n" not in reason and name not in reason
    # A bad position takes the next position's image (same paths and seed: the order seen above).
    assert names == [next(n for n in order[p:] if n not in bad) for p in range(30)]
    with TrainingData(sources, SIZE, 5, seed=4) as fresh:  # the same replacement every time
        assert fresh.get(4)[1] == names[20:25]


def test_a_vanished_file_is_skipped(photos):
    sources = content_sources(photos)
    (photos / "p0.png").unlink()
    with TrainingData(sources, SIZE, 6) as loader:
        names = _names(loader, [0, 1])
        assert loader.skipped == [(str(photos / "p0.png"), "no such file")]
    assert str(photos / "p0.png") not in names and len(names) == 12


def test_all_unreadable_is_a_one_line_error(tmp_path):
    (tmp_path / "a.jpg").write_text("text")
    (tmp_path / "b.png").write_bytes(b"")
    with TrainingData(content_sources(tmp_path), SIZE, 4, threads=2) as loader:
        with pytest.raises(ValueError, match="all 2 content images are unreadable") as caught:
            loader.get(0)
    assert "\n" not in str(caught.value)


def test_tiny_images_are_upscaled(tmp_path):
    _save(tmp_path / "tiny.png", 24, 40, 1)
    with TrainingData([tmp_path / "tiny.png"], 64, 2) as loader:
        images, _ = loader.get(0)
    assert images.shape == (2, 64, 64, 3) and 0.0 <= images.min() and images.max() <= 1.0


def test_large_photos_are_decoded_small(tmp_path):
    _save(tmp_path / "big.jpg", 768, 1024, 0)
    _save(tmp_path / "big.png", 600, 900, 1)
    for name, aspect in (("big.jpg", 4 / 3), ("big.png", 1.5)):
        h, w, _ = decode_content(tmp_path / name, 32).shape
        assert 64 <= min(h, w) < 128 and abs(w / h - aspect) < 0.05, (name, h, w)
    assert decode_content(tmp_path / "big.jpg", 32).shape == (96, 128, 3)  # JPEG decoded at 1/8 scale, no further
    rotated = Image.fromarray((smooth_image(400, 800, 2) * 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter: 400 wide, 800 high
    rotated.save(tmp_path / "turned.jpg", exif=exif)
    assert decode_content(tmp_path / "turned.jpg", 32).shape == (200, 100, 3)


def test_augment_crops_half_to_all_of_the_shorter_side_and_flips_half_the_time():
    ramp = np.repeat(np.linspace(0, 1, 64, dtype=np.float32)[None, :, None], 3, axis=2)
    image = np.repeat(ramp, 48, axis=0)  # 48 x 64, brightness = x / 63
    spans, flips = [], []
    for seed in range(40):
        out = augment(image, SIZE, np.random.default_rng(seed))
        assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.float32
        spans.append(abs(out[0, -1, 0] - out[0, 0, 0]) * 63 / 48)  # the crop's side / the shorter side, about
        flips.append(out[0, 0, 0] > out[0, -1, 0])
    assert 0.4 < min(spans) < 0.65 and 0.85 < max(spans) <= 1.0
    assert 10 < sum(flips) < 30


def test_the_next_steps_are_decoded_ahead(photos, monkeypatch):
    decoded, lock = [], threading.Lock()
    real = training_data.decode_content

    def counting(where, size):
        with lock:
            decoded.append(where)
        return real(where, size)

    monkeypatch.setattr(training_data, "decode_content", counting)
    with TrainingData(content_sources(photos), SIZE, 2, prefetch=2, threads=2) as loader:
        loader.get(0)
        deadline = time.monotonic() + 10
        while len(decoded) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(decoded) == 6  # steps 0, 1 and 2, before step 1 is asked for
        loader.get(1)
    with pytest.raises(RuntimeError):
        loader.get(2)  # closed


# ----------------------------------------------------------------------------- sources

def test_a_folder_is_every_image_under_it_sorted(photos):
    (photos / "readme.txt").write_text("not an image")
    (photos / ".hidden.jpg").write_bytes(b"")
    (photos / ".cache").mkdir()
    _save(photos / ".cache" / "thumb.png", 20, 20, 0)
    found = content_sources(str(photos))
    assert found == sorted(found) and len(found) == 6
    assert photos / "more" / "p5.jpg" in found and photos / "readme.txt" not in found


def test_manifests_txt_csv_jsonl_with_relative_and_absolute_paths(photos, tmp_path):
    p0, p1 = photos / "p0.png", photos / "p1.jpg"
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "a.txt").write_text(f"# training photos\n\n../photos/p0.png\n  {p1}  \r\n#../photos/p2.png\n")
    (lists / "b.csv").write_text(f"\ufeffid;Path\n1;../photos/p0.png\n;;\n2;{p1}\n", encoding="utf-8")
    (lists / "c.csv").write_text(f"content,style\n../photos/p0.png,art.png\n{p1},art.png\n")
    (lists / "d.jsonl").write_text(f'{{"content": "../photos/p0.png"}}\n\n{{"path": "{p1}", "x": 1}}\n')
    for name in ("a.txt", "b.csv", "c.csv", "d.jsonl"):
        found = content_sources(lists / name)
        assert [p.resolve() for p in found] == [p0, p1], name


@pytest.mark.parametrize("name, text, message", [
    ("e.csv", "style,output\na.png,b.png\n", "content or path column"),
    ("f.csv", "content\nx.png\n,\n\"\",y\n", ":4: expected a path in the content column"),
    ("g.jsonl", '{"content": "a.png"}\n[1, 2]\n', ":2: expected an object"),
    ("h.jsonl", '{"content": "a.png"}\n{oops\n', ":2: not JSON"),
    ("i.txt", "# nothing\n\n", "lists no images"),
])
def test_bad_manifests_are_one_line_errors(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message) as caught:
        content_sources(tmp_path / name)
    assert "\n" not in str(caught.value) and name in str(caught.value)


def test_one_image_a_missing_path_and_an_empty_folder(photos, tmp_path):
    assert content_sources(photos / "p0.png") == [photos / "p0.png"]
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.doc").write_text("x")
    for spec, message in ((tmp_path / "nowhere", "no such file or folder"), (tmp_path / "empty", "no images"),
                          (tmp_path / "notes.doc", "expected a folder, a manifest")):
        with pytest.raises(ValueError, match=message) as caught:
            content_sources(spec)
        assert str(spec) in str(caught.value) and "\n" not in str(caught.value)


@pytest.fixture()
def bucket():
    root = f"memory://train-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("memory")
    for i in range(3):
        buffer = io.BytesIO()
        Image.fromarray((smooth_image(32, 40, i) * 255).astype(np.uint8)).save(buffer, format="PNG")
        fs.pipe_file(f"{root}/photos/q{i}.png".replace("memory://", "/"), buffer.getvalue())
    fs.pipe_file(f"{root}/photos/broken.png".replace("memory://", "/"), b"\x89PNG broken")
    fs.pipe_file(f"{root}/list.txt".replace("memory://", "/"), b"photos/q0.png\nphotos/q2.png\nphotos/gone.png\n")
    yield root
    fs.rm(root.replace("memory://", "/"), recursive=True)


def test_a_bucket_folder_and_manifest(bucket):
    found = content_sources(f"{bucket}/photos")
    assert [str(p) for p in found] == [f"{bucket}/photos/{n}.png" for n in ("broken", "q0", "q1", "q2")]
    with TrainingData(found, SIZE, 3) as loader:
        images, names = loader.get(0)
        assert images.shape == (3, SIZE, SIZE, 3) and f"{bucket}/photos/broken.png" not in names
        assert [name for name, _ in loader.skipped] in ([], [f"{bucket}/photos/broken.png"])
        _names(loader, [1, 2])
        assert [name for name, _ in loader.skipped] == [f"{bucket}/photos/broken.png"]
    listed = content_sources(f"{bucket}/list.txt")
    assert [str(p) for p in listed] == [f"{bucket}/photos/q0.png", f"{bucket}/photos/q2.png",
                                        f"{bucket}/photos/gone.png"]
    with TrainingData(listed, SIZE, 3) as loader:
        assert set(loader.get(0)[1]) <= {str(p) for p in listed[:2]}
        assert loader.skipped[0][0] == f"{bucket}/photos/gone.png" and "no such" in loader.skipped[0][1]


def test_a_bucket_folder_is_listed_with_its_sub_folders(bucket):
    fs = fsspec.filesystem("memory")
    buffer = io.BytesIO()
    Image.fromarray((smooth_image(32, 40, 7) * 255).astype(np.uint8)).save(buffer, format="PNG")
    fs.pipe_file(f"{bucket}/photos/sub/q3.png".replace("memory://", "/"), buffer.getvalue())
    found = [str(p) for p in content_sources(f"{bucket}/photos")]
    assert f"{bucket}/photos/sub/q3.png" in found and len(found) == 5
