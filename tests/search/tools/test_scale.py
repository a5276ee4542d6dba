"""search.tools.scale end to end: the real worker loop timed on SQLite and PostgreSQL, tiny runs."""

import json

import pytest

from search.tools.scale import BEFORE, PHASES
from tests.conftest import run_module

TINY = ("--sizes", "20", "60", "--measured-trials", "3", "--workers", "1", "3")
TINY_FLEET = ("--fleet-trials", "9", "--trial-seconds", "0.1", "--epochs", "2")


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_scale_times_every_phase_and_checks_each_fleet_s_total(tmp_path, request, database):
    flags = [*TINY, *TINY_FLEET, "--out", str(tmp_path / "out")]
    if database == "postgresql":
        flags += ["--postgres", request.getfixturevalue("postgres_database")[1]]
    run = run_module("search.tools.scale", *flags, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and "Warning" not in run.stderr
    record = json.loads((tmp_path / "out" / "scale.json").read_text())
    assert (tmp_path / "out" / "scale.png").stat().st_size > 0
    assert set(record["results"]) == {"SQLite"} | (
        {"PostgreSQL"} if database != "sqlite" else set()
    )
    for result in record["results"].values():
        assert [row["size"] for row in result["overhead"]] == [20, 60]
        for row in result["overhead"]:
            assert row["start"] > 0 and row[BEFORE] > 0
            assert all(row[phase] >= 0 for phase in PHASES)
            assert row["report"] > 0 and row["create trial"] > 0 and row["finish"] > 0
        assert [row["workers"] for row in result["throughput"]] == [1, 3]
        for row in result["throughput"]:
            assert row["exact"] and row["trials"] == 9 and row["failed"] == row["errors"] == 0
            assert 0 < row["trials_per_second"] <= row["ideal"] * 1.05
    if database == "postgresql":
        assert (
            record["results"]["PostgreSQL"]["throughput"][-1]["connections_peak"] >= 3
        )  # a worker each
    assert "start at 60 trials / at 20" in run.stdout


def test_a_bad_postgres_url_is_one_line_and_hides_the_password(tmp_path):
    run = run_module(
        "search.tools.scale", "--postgres", "postgresql://me:s3cret@127.0.0.1:1/x", cwd=tmp_path
    )
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "cannot create a database" in run.stderr
    assert "s3cret" not in run.stderr and not (tmp_path / "studies").exists()


@pytest.mark.slow
def test_grpc_proxy_comparison_runs_plain_optuna_both_ways(tmp_path, postgres_database):
    flags = ["--sizes", "10", "--measured-trials", "1", "--workers", "2", *TINY_FLEET]
    flags += ["--postgres", postgres_database[1], "--grpc-proxy", "--out", str(tmp_path)]
    run = run_module("search.tools.scale", *flags, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    rows = json.loads((tmp_path / "scale.json").read_text())["results"]["PostgreSQL"]
    assert [row["route"] for row in rows["grpc_proxy"]] == ["direct", "gRPC proxy"]
    for row in rows["grpc_proxy"]:
        assert row["errors"] == 0 and 0 < row["trials_per_second"] <= row["ideal"] * 1.05
    # Through the proxy the workers hold no connection of their own: the proxy's are fewer.
    direct, proxied = rows["grpc_proxy"]
    assert proxied["connections_peak"] < direct["connections_peak"]


def test_grpc_proxy_needs_postgres(tmp_path):
    run = run_module("search.tools.scale", "--grpc-proxy", cwd=tmp_path)
    assert run.returncode == 2 and "--grpc-proxy needs --postgres" in run.stderr
