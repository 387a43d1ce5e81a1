"""``benchmarks/gpu.py --device cpu --tiny``: the GPU check script's smoke mode covers every architecture in both
dtypes and writes the speed fields (the GPU run itself is recorded in BENCHMARKS.md)."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from bcos.verification import COMPLETENESS_TOLERANCES
from tiny_models import ARCHITECTURES

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::UserWarning")]
SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_tiny_mode_checks_every_architecture_in_both_dtypes(tmp_path):
    out = tmp_path / "gpu.json"
    result = load_script().main(["--device", "cpu", "--tiny", "--rounds", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    checked = sorted((row["architecture"], row["dtype"]) for row in result["completeness"])
    assert checked == sorted((name, dtype) for _, name in ARCHITECTURES for dtype in ("bfloat16", "float32"))
    for row in result["completeness"]:
        assert row["tolerance"] == COMPLETENESS_TOLERANCES[getattr(torch, row["dtype"])]
        assert row["passed"] and row["completeness_error"] <= row["tolerance"], row
    assert result["all_complete"]
    assert [row["case"] for row in result["speed"]] == ["tiny encoder", "tiny decoder"]
    for row in result["speed"]:
        assert row["explanation_completeness_error"] <= 1e-3
        assert row["explanations_per_second"] > 0 and math.isfinite(row["step_time_ratio_bcos_over_conventional"])


def test_cuda_without_a_gpu_is_a_usage_error(tmp_path, capsys, monkeypatch):
    script = load_script()
    monkeypatch.setattr(script.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--out", str(tmp_path / "gpu.json")])
    assert exit_info.value.code == 2
    assert ("--device cuda: this machine has no CUDA device; run with --device cpu --tiny for the smoke test"
            in capsys.readouterr().err)
    assert not (tmp_path / "gpu.json").exists()
