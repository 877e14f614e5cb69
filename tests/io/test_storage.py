"""URLs wherever a path goes (jaxstyle.io.storage), fast: memory:// stands in for a bucket."""

from __future__ import annotations

import io
import json
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxstyle.cli import main
from jaxstyle.io import images as image_io
from jaxstyle.io import storage
from jaxstyle.io.storage import StorageError, Url
from jaxstyle.jobs.manifest import cross_product, read_manifest
from tests.helpers import smooth_image

fsspec = pytest.importorskip("fsspec")

FAST = ["--style-loss", "gram",
        "--size", "32", "--iterations", "3", "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1",
        "--quiet"]


def png_bytes(h, w, seed) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((smooth_image(h, w, seed) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture()
def bucket():
    """A fresh memory:// prefix with two photos, two paintings and a manifest; removed afterwards."""
    root = f"memory://test-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("memory")
    fs.pipe({f"{root}/photos/a.png": png_bytes(48, 64, 1), f"{root}/photos/b.png": png_bytes(64, 48, 2),
             f"{root}/art/x.png": png_bytes(40, 40, 3), f"{root}/art/y.png": png_bytes(30, 50, 4),
             f"{root}/photos/notes.txt": b"not an image"})
    yield root
    fs.rm(root.replace("memory://", "/"), recursive=True)


def test_locations_and_names():
    assert storage.location("s3://b/k/x.png") == Url("s3://b/k/x.png")
    assert storage.location("file:///tmp/a%20b.png") == Path("/tmp/a b.png")
    assert storage.location("C:/photos/x.png") == Path("C:/photos/x.png")  # a drive, not a scheme
    assert storage.location("rel/x.png") == Path("rel/x.png")
    url = Url("S3://bucket/dir/photo.v2.jpg/")
    assert str(url) == "s3://bucket/dir/photo.v2.jpg"
    assert (url.name, url.stem, url.suffix, url.root) == ("photo.v2.jpg", "photo.v2", ".jpg", "bucket")
    assert url.parent == Url("s3://bucket/dir") and url.with_name("o.png") == Url("s3://bucket/dir/o.png")
    assert Url("s3://b/m") / "img/a.png" == Url("s3://b/m/img/a.png")
    assert Url("s3://b/m") / "/top.png" == Url("s3://b/top.png")  # like a link on a web page
    assert Url("s3://b/m") / "gs://o/x.png" == Url("gs://o/x.png")
    assert Path("m") / "x.png" == storage.join(Path("m"), "x.png")
    assert storage.join(Path("m"), "s3://b/x.png") == Url("s3://b/x.png")
    with pytest.raises(TypeError, match="is a URL, not a local path"):
        open(Url("s3://b/x.png"))  # noqa: SIM115 - a URL is never opened as a local file by accident


def test_inside_folds_dots_and_never_mixes_kinds(tmp_path):
    out = Url("s3://b/out")
    assert storage.inside(out, Url("s3://b/out/a/x.png"))
    assert not storage.inside(out, Url("s3://b/out/../x.png"))
    assert not storage.inside(out, Url("s3://b/outside/x.png"))  # a prefix of the name is not a folder
    assert not storage.inside(out, Url("gs://b/out/x.png"))
    assert not storage.inside(out, tmp_path / "x.png") and not storage.inside(tmp_path, out / "x.png")
    assert storage.inside(tmp_path, tmp_path / "a" / "x.png")


def test_transient_failures_are_retried_then_reported_in_one_line():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("connection reset by peer")
        return "ok"

    assert storage.retrying(flaky, Url("s3://b/k"), delays=(0, 0)) == "ok" and len(calls) == 3
    calls.clear()

    def down():
        calls.append(1)
        raise TimeoutError("timed out talking to https://user:s3cret@example.com/b/k")

    with pytest.raises(StorageError) as info:
        storage.retrying(down, Url("s3://b/k"), delays=(0, 0))
    assert len(calls) == 3
    message = str(info.value)
    assert message.startswith("s3://b/k: network or server failure after 3 tries (TimeoutError")
    assert "s3cret" not in message and "\n" not in message
    calls.clear()

    def missing():
        calls.append(1)
        raise FileNotFoundError("The specified bucket does not exist")

    with pytest.raises(StorageError, match=r"^s3://b/k: no such bucket$"):
        storage.retrying(missing, Url("s3://b/k"), delays=(0, 0))
    assert len(calls) == 1  # not retried

    class NoCredentialsError(Exception):  # botocore's name
        pass

    def anonymous():
        raise NoCredentialsError("Unable to locate credentials")

    with pytest.raises(StorageError, match=r"no credentials found for s3://"):
        storage.retrying(anonymous, Url("s3://b/k"), delays=(0, 0))

    def denied():
        raise PermissionError("Access Denied")

    with pytest.raises(StorageError, match=r"^s3://b/k: access denied \(check the credentials"):
        storage.retrying(denied, Url("s3://b/k"), delays=(0, 0))


def test_a_url_without_the_extra_says_which_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "fsspec", None)  # as if not installed
    with pytest.raises(StorageError, match=r"^s3://b/x.png: s3:// URLs need the cloud extra: "
                                           r"pip install 'jaxstyle\[cloud\]'"):
        storage.read_bytes(Url("s3://b/x.png"))


def test_http_is_read_only():
    with pytest.raises(StorageError, match=r"^https://example.com/o.png: https:// is read-only"):
        storage.write_bytes(Url("https://example.com/o.png"), b"")
    with pytest.raises(StorageError, match="read-only"):
        image_io.check_output_path("https://example.com/o.png")


def test_images_round_trip_through_memory(bucket):
    image = smooth_image(20, 30, 7)
    for suffix in (".png", ".tif"):
        url = f"{bucket}/out/x{suffix}"
        image_io.save_image(url, image)
        assert image_io.image_size(url) == (20, 30)
        np.testing.assert_allclose(image_io.load_image(url), image, atol=1 / 255 if suffix == ".png" else 1e-4)
    with pytest.raises(StorageError, match=rf"^{bucket}/nope.png: no such file or object$"):
        image_io.load_image(f"{bucket}/nope.png")
    with pytest.raises(image_io.ImageError, match=rf"^{bucket}/photos/notes.txt: not an image"):
        image_io.load_image(f"{bucket}/photos/notes.txt")


def test_manifest_entries_resolve_against_the_manifest_url(bucket, tmp_path):
    manifest = f"{bucket}/lists/m.csv"
    local = tmp_path / "local.png"
    local.write_bytes(png_bytes(8, 8, 0))
    storage.write_bytes(Url(manifest), f"content,style,output\n../photos/a.png,file://{local},\n"
                                       f"/top.png,s3://elsewhere/y.png,sub/o.png\n"
                                       f"../photos/b.png,../art/x.png,../escape.png\n".encode())
    pairs = read_manifest(manifest, f"{bucket}/out")
    assert pairs[0].content == Url(f"{bucket}/photos/a.png") and pairs[0].style == local
    assert pairs[0].output == Url(f"{bucket}/out/a__local.png")
    assert pairs[1].content == Url(f"{bucket}/top.png") and pairs[1].style == Url("s3://elsewhere/y.png")
    assert pairs[1].output == Url(f"{bucket}/out/sub/o.png") and pairs[1].error is None
    assert "outside the output folder" in pairs[2].error
    with pytest.raises(StorageError, match=r"lists/missing.csv: no such file or object"):
        read_manifest(f"{bucket}/lists/missing.csv", f"{bucket}/out")
    pairs = cross_product(f"{bucket}/photos", f"{bucket}/art", f"{bucket}/out")
    assert [(p.content.name, p.style.name) for p in pairs] == [("a.png", "x.png"), ("a.png", "y.png"),
                                                               ("b.png", "x.png"), ("b.png", "y.png")]


def test_batch_reads_and_writes_memory_urls_and_resumes(env, bucket, capsys):
    fs = fsspec.filesystem("memory")
    out = f"{bucket}/out"
    storage.write_bytes(Url(f"{bucket}/m.jsonl"), b'{"content": "photos/a.png", "style": "art/x.png"}\n'
                                                  b'{"content": "photos/gone.png", "style": "art/x.png"}\n'
                                                  b'{"content": "photos/b.png", "style": "art/y.png", '
                                                  b'"output": "b/y.png"}\n')
    assert main(["batch", f"{bucket}/m.jsonl", "--out-dir", out, *FAST, "--plot"]) == 1  # one pair failed
    report = json.loads(storage.read_text(Url(f"{out}/report.json")))
    assert report["summary"] == {"total": 3, "done": 2, "skipped": 0, "failed": 1, "pending": 0}
    failed = [r for r in report["pairs"] if r["status"] == "failed"]
    assert failed[0]["reason"] == f"{bucket}/photos/gone.png: no such file or object"
    for name in ("a__x.png", "b/y.png", "a__x.loss.png"):
        Image.open(io.BytesIO(storage.read_bytes(Url(f"{out}/{name}")))).load()  # whole images
    written = {p: fs.info(p)["created"] for p in fs.find(out.replace("memory://", "/"))}
    assert main(["batch", f"{bucket}/m.jsonl", "--out-dir", out, *FAST]) == 1
    report = json.loads(storage.read_text(Url(f"{out}/report.json")))
    assert report["summary"]["skipped"] == 2 and report["summary"]["done"] == 0
    assert all(fs.info(p)["created"] == t for p, t in written.items() if not p.endswith("report.json"))


def test_stylize_to_a_url_and_weights_from_a_url(env, bucket, weights_file, monkeypatch, capsys):
    storage.write_bytes(Url(f"{bucket}/w/vgg.npz"), weights_file.read_bytes())
    monkeypatch.delenv("JAXSTYLE_WEIGHTS")
    out = f"{bucket}/out/result.png"
    args = ["stylize", f"{bucket}/photos/a.png", f"{bucket}/art/x.png", "-o", out, *FAST,
            "--weights", f"{bucket}/w/vgg.npz"]
    assert main(args) == 0
    assert image_io.image_size(out) == (24, 32)
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == f"jaxstyle: error: {out}: already exists (pass --overwrite to " \
                                              f"replace it)"
    assert main([*args[:4], f"{bucket}/photos/a.png", *args[5:], "--overwrite"]) == 2
    assert "would overwrite input" in capsys.readouterr().err
    assert main([*args[:-1], f"{bucket}/w/none.npz", "--overwrite"]) == 2
    assert capsys.readouterr().err.strip() == f"jaxstyle: error: {bucket}/w/none.npz: no such weights file"
