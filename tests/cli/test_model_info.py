"""`jaxstyle model info MODEL [--json]`: the summary of a model file, its JSON, and a refused file
in one line (exit 2)."""

from __future__ import annotations

import json

import jax
import pytest

from jaxstyle.cli import main
from jaxstyle.io.model_file import model_info, read_model, write_model
from jaxstyle.model.transformer import parameter_count
from tests.helpers import one_line_error
from tests.jobs.test_apply_model import metadata, tiny_model


@pytest.fixture()
def model(tmp_path):
    return tiny_model(tmp_path / "model.safetensors", preserve_colors="luminance")


def test_the_summary_names_what_the_file_holds(model, capsys):
    assert main(["model", "info", str(model)]) == 0
    out = capsys.readouterr().out
    params, _, _ = read_model(model)
    info = model_info(model)
    count = f"{parameter_count(params):,} in {len(jax.tree.leaves(params))} tensors; 2 thumbnails"
    for text in ("styles             2: 0 starry, 1 wave", "width 4, 1 residual block,", "over 2 styles",
                 f"parameters         {count}", "trained            12 steps at 32 px",
                 "gram style loss; content weight 1.0, style weight 0.001, tv weight 0.0; colours: luminance",
                 "layers             content relu4_2; style relu1_1, relu2_1",
                 f"vgg                digest {'0' * 32}; pooling max; source random-test",
                 "images_per_second  3.5", "jaxstyle           0.1.0", "seed               0",
                 f"{info['bytes']:,} bytes", f"sha256 digest {info['digest']}"):
        assert text in out, (text, out)


def test_json_is_model_info(model, capsys):
    assert main(["model", "info", str(model), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(model_info(model)))


def test_a_file_that_is_not_a_usable_model_is_one_line(tmp_path, model, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(model.read_bytes()[:-100])
    params, _, _ = read_model(model)
    wider = tmp_path / "wider.safetensors"
    write_model(wider, params, metadata(width=8))
    for path, text in ((tmp_path / "notes.txt", "got a text file"), (truncated, "truncated"),
                       (tmp_path / "none.safetensors", "no such file"),
                       (wider, "its parameters do not fit its architecture")):
        for extra in ([], ["--json"]):
            assert main(["model", "info", str(path), *extra]) == 2
            line = one_line_error(capsys)
            assert line.startswith(f"jaxstyle: error: {path}: ") and text in line, line
