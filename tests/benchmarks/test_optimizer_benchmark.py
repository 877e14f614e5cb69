"""benchmarks.optimizers end to end on the 32 px suite (random weights, two optimizers, a few steps)."""

from __future__ import annotations

import json

from PIL import Image

from benchmarks import optimizers


def test_benchmark_runs_end_to_end(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\ntext before\n")
    monkeypatch.setattr(optimizers, "README", readme)
    results = optimizers.main(["--suite", "tiny", "--random-weights", "--shallow", "--steps", "3", "--optimizers",
                               "lbfgs,tests.optim.optimizer_factories:clipped_adam", "--out", str(tmp_path),
                               "--readme"])
    assert len(results["problems"]) == 2
    for problem in results["problems"]:
        assert [r["name"] for r in problem["runs"]] == ["lbfgs", "tests.optim.optimizer_factories:clipped_adam"]
        for run in problem["runs"]:
            assert len(run["losses"]) == len(run["evaluations"]) == len(run["seconds"]) == 4
            assert run["evaluations"] == sorted(run["evaluations"]) and run["evaluations"][-1] >= 3
            assert run["losses"][-1] < run["losses"][0]
        best = problem["best_loss"]
        assert best == min(min(r["losses"]) for r in problem["runs"])
        winner = next(r for r in problem["runs"] if min(r["losses"]) == best)
        assert winner["targets"]["0.001"] is not None  # the best run reaches every target
        Image.open(tmp_path / problem["figure"]).load()
    saved = json.loads(next(tmp_path.glob("optimizers-*.json")).read_text())
    assert saved["problems"][0]["runs"][0]["name"] == "lbfgs"
    text = readme.read_text()
    assert text.startswith("# Benchmarks\n\ntext before") and "| lbfgs |" in text
    optimizers.write_readme_table("| new |", "again")  # rewritten in place, not appended twice
    assert readme.read_text().count(optimizers.TABLE_START) == 1 and "| new |" in readme.read_text()
