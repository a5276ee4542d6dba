import json
import math

import pytest
import torch

from search.tools.bench import linear_default_fuse
from tests.conftest import run_module


def test_bad_out_is_one_line_and_exit_2(tmp_path):
    done = run_module("search.tools.bench", "--tiny", "--out", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "is a folder" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_tiny_benchmark_runs_and_its_numbers_are_sane(tmp_path, cifar_archive, cifar_cache):
    out = tmp_path / "bench.json"
    done = run_module(
        "search.tools.bench",
        # Two fused slots: on a CPU the fused CNN is slow, and the test checks the plumbing.
        *("--tiny", "--threads", "2", "--fuse", "2", "--out", str(out)),
        *("--data", str(cifar_archive), "--cache-dir", str(cifar_cache)),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["mode"] == "tiny"
    machine = results["machine"]
    assert machine["torch_threads"] == 2 and machine["cpu"]
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    throughput = results["throughput"]
    layouts = {"one_loop": (1, 2), "side_by_side": (2, 1)}
    for layout, (processes, threads_each) in layouts.items():
        row = throughput[layout]
        assert (row["processes"], row["threads_each"]) == (processes, threads_each)
        assert row["project_images_per_s"] > 0 and row["reference_images_per_s"] > 0
        assert math.isclose(
            row["ratio"], row["project_images_per_s"] / row["reference_images_per_s"], abs_tol=0.01
        )
    (linear,) = results["pruning"]
    for label in ("pruned", "unpruned"):
        # 3 trials of 20 epochs: too few trials for the pruner to start, so all run in full.
        assert linear[label]["trials"] == 3 and linear[label]["epochs_trained"] == 60
        assert linear[label]["best_val_loss"] > 0
    assert [row["jobs"] for row in results["time_to_result"]] == [1, 2]
    for row in results["time_to_result"]:
        assert 1 <= row["complete_trials"] <= 2
        assert 0 < row["seconds_to_good"] <= row["seconds_total"]
        assert 0 < row["best_test_accuracy"] <= 1
    overhead = results["storage_overhead"]
    assert overhead["report_ms"] > 0 and overhead["should_prune_ms"] > 0
    assert 0 < overhead["linear_storage_share"] < 1
    assert "2 x 1 thread(s): project" in done.stdout and "time-to-good jobs 2" in done.stdout
    fused = results["fused_linear"]
    assert fused["slots"] == 2 and fused["unfused"]["trials"] == fused["fused"]["trials"] == 6
    assert math.isclose(
        fused["seconds_ratio"],
        fused["unfused"]["seconds"] / fused["fused"]["seconds"],
        abs_tol=0.01,
    )
    row = results["fused_throughput"]
    assert row["fused_images_per_s"] > 0 and row["processes_images_per_s"] > 0
    assert "fused linear 6 trials, --fuse 2" in done.stdout


def test_the_fused_linear_comparison_takes_the_search_s_own_default():
    # What a user's `python -m search.linear` runs: --fuse 4 on a CPU, not a K of the bench's.
    assert linear_default_fuse("cpu", 50) == 4
    assert linear_default_fuse("cpu", 3) == 3
