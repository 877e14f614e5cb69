"""The one-command accelerator check runs end to end (its --quick form, on this CPU)."""

from __future__ import annotations

import json

from benchmarks import accelerator


def test_accelerator_check_quick(tmp_path):
    report = accelerator.main(["--quick", "--out", str(tmp_path), "--budget", "300"])
    parts = report["parts"]
    assert parts["tests"]["status"].startswith("skipped") and parts["peer"]["status"].startswith("skipped")
    for name in ("steps", "long", "batch"):
        assert parts[name]["status"] == "done", parts[name]
    steps = parts["steps"]["result"]
    assert {(r["precision"], r["remat"]) for r in steps} == {("float32", False), ("float32", True),
                                                             ("bfloat16", False), ("bfloat16", True)}
    assert all(r["step_seconds_median"] > 0 for r in steps)
    assert parts["long"]["result"]["steps_done"] == 5
    batch = parts["batch"]["result"]["results"][0]
    assert [r["batch_size"] for r in batch] == [1, 1, 2]  # the loop, then B = 1, 2
    saved = json.loads(next(tmp_path.glob("accelerator-*.json")).read_text())
    assert saved["parts"]["long"]["status"] == "done"
