"""The README's promise: `hpml train` with no overrides, on 2 CPU cores, in under 2 minutes, >= 90%."""
import json
import time

import pytest
from conftest import hpml_subprocess, only_run_folder


@pytest.mark.slow
def test_default_train_reaches_90_percent_in_under_two_minutes(tmp_path):
    start = time.perf_counter()
    result = hpml_subprocess(["train"], tmp_path, timeout=300)
    elapsed = time.perf_counter() - start
    assert result.rc == 0, result.err
    summary = json.loads((only_run_folder(tmp_path) / "summary.json").read_text())
    assert summary["model"] == "resnet18" and summary["dataset"] == "shapes"
    assert summary["final"]["val_acc"] >= 0.90
    assert "run folder:" in result.out and "train_s" in result.out
    assert elapsed < 120, f"took {elapsed:.0f} s"
