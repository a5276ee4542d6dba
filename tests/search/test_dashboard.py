import csv
import io
import shutil
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import project_env, run_module
from tests.search.conftest import DASHBOARD_CLI, free_port, get_json, wait_until_serving

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def study_id(base: str, name: str) -> int:
    studies = get_json(f"{base}/api/studies")["study_summaries"]
    return next(s["study_id"] for s in studies if s["study_name"] == name)


def test_dashboard_api_shows_trials_params_and_the_report_note(reported_study, serve):
    base = serve(str(DASHBOARD_CLI), reported_study.url, "--host", "127.0.0.1", "--port")
    study = optuna.load_study(study_name="linear", storage=reported_study.url)
    detail = get_json(f"{base}/api/studies/{study_id(base, 'linear')}")
    assert len(detail["trials"]) == len(study.trials) == 8
    by_number = {t["number"]: t for t in detail["trials"]}
    best = study.best_trial
    params = {p["name"]: p["param_internal_value"] for p in by_number[best.number]["params"]}
    assert params["weight_decay"] == pytest.approx(best.params["weight_decay"])
    assert "Best regularizers of `linear`" in detail["note"]["body"]
    assert [g["id"] for g in detail["plotly_graph_objects"]] == ["regsearch-learning-curves"]


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium: apt-get install -y chromium")
def test_dashboard_page_renders_in_a_headless_browser(reported_study, serve, tmp_path):
    from playwright.sync_api import sync_playwright

    base = serve(str(DASHBOARD_CLI), reported_study.url, "--host", "127.0.0.1", "--port")
    sid = study_id(base, "linear")
    best = optuna.load_study(study_name="linear", storage=reported_study.url).best_trial.number
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/dashboard", timeout=60_000)
            page.get_by_text("1. linear").wait_for(timeout=60_000)
            # The study page: the best trial and the report's learning-curve graph.
            page.goto(f"{base}/dashboard/studies/{sid}", timeout=60_000)
            page.get_by_text(f"Best Trial (number={best})").wait_for(timeout=60_000)
            page.get_by_text("no regularization (reference) validation").first.wait_for(
                timeout=60_000
            )
            page.goto(f"{base}/dashboard/studies/{sid}/note", timeout=60_000)
            page.get_by_text("Best regularizers of").wait_for(timeout=60_000)
            assert "best vs no regularization (reference)" in page.inner_text("body")
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "dashboard.png").stat().st_size > 0


def test_a_database_in_a_read_only_folder_is_served(read_only_share, serve):
    command = read_only_share.command(
        "search.dashboard", "--storage", read_only_share.url, "--port"
    )
    base = serve(*command, cwd=read_only_share.folder)
    detail = get_json(f"{base}/api/studies/{study_id(base, 'linear')}")
    assert len(detail["trials"]) == 8


def test_reading_the_dashboard_does_not_lock_out_a_worker(serve, tmp_path):
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    # A worker that writes for seconds, one trial after another: 4 fused trials of 5 epochs
    # each finished the 18 trials between two reads of the dashboard.
    common = ("--epochs", "100", "--pruner", "none", "--fuse", "1", "--storage", url)
    first = run_module("search.linear", "--trials", "2", *common, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    base = serve(str(DASHBOARD_CLI), url, "--host", "127.0.0.1", "--port")
    sid = study_id(base, "linear")
    worker = subprocess.Popen(
        [sys.executable, "-m", "search.linear", "--trials", "20", *common],
        cwd=tmp_path,
        env={"PYTHONPATH": project_env()["PYTHONPATH"], "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = set()
    try:
        while worker.poll() is None:
            seen.add(len(get_json(f"{base}/api/studies/{sid}")["trials"]))
            get_json(f"{base}/api/studies")
            time.sleep(0.05)
        out, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, err
    assert "locked" not in err + out
    assert len(seen) >= 2  # the dashboard really read while the worker wrote
    study = optuna.load_study(study_name="linear", storage=url)
    assert len([t for t in study.trials if t.state.is_finished()]) == 20
    assert all(t.state != TrialState.RUNNING for t in study.trials)


def test_search_dashboard_serves_the_study(reported_study, serve):
    base = serve(
        sys.executable, "-m", "search.dashboard", "--storage", reported_study.url, "--port"
    )
    detail = get_json(f"{base}/api/studies/{study_id(base, 'linear')}")
    assert len(detail["trials"]) == 8


def test_search_dashboard_refuses_a_missing_database(tmp_path):
    db = tmp_path / "none.db"
    run = run_module("search.dashboard", "--storage", f"sqlite:///{db}", cwd=tmp_path)
    assert run.returncode == 2 and "no study database" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    assert not db.exists()
    default = run_module("search.dashboard", cwd=tmp_path)
    assert default.returncode == 2 and "studies/cifar.db" in default.stderr
    assert not (tmp_path / "studies").exists()


def test_every_trial_reads_off_as_off_in_the_dashboard_and_its_csv(tmp_path, serve):
    """Queued trials too: before they ran, the dashboard showed only their raw params."""
    from search.linear import build_parser
    from search.study import open_study
    from search.tasks.linear import task_from_args

    url = f"sqlite:///{tmp_path / 'queued.db'}"
    task = task_from_args(build_parser().parse_args([]))
    open_study(
        optuna.storages.RDBStorage(url),
        "linear",
        task,
        optuna.samplers.RandomSampler(0),
        optuna.pruners.NopPruner(),
        task.space.start_design(3, 0),
    )
    base = serve(str(DASHBOARD_CLI), url, "--host", "127.0.0.1", "--port")
    number = study_id(base, "linear")
    trials = get_json(f"{base}/api/studies/{number}")["trials"]
    assert len(trials) == 4 and {t["state"] for t in trials} == {"Waiting"}
    applied = [{a["key"]: a["value"] for a in t["user_attrs"]}["regularizers"] for t in trials]
    assert applied[0] == "dropout=0 weight_decay=off l1=off patience=off"  # the baseline
    assert all(text.startswith("dropout=") for text in applied)
    # The documented export: one CSV row per trial, the applied values beside the raw params.
    with urllib.request.urlopen(f"{base}/csv/{number}", timeout=30) as response:
        rows = list(csv.DictReader(io.StringIO(response.read().decode())))
    assert [row["UserAttribute regularizers"] for row in rows] == applied


def test_search_dashboard_logs_no_line_per_request(reported_study, tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "search.dashboard", "--storage", reported_study.url,
         "--port", str(port)],
        cwd=tmp_path, env=project_env(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base, server)
        for _ in range(3):
            get_json(f"{base}/api/studies")
    finally:
        server.terminate()
    stdout, stderr = server.communicate(timeout=30)
    assert stdout == f"optuna-dashboard on {base}/ (Ctrl-C to stop)\n"
    assert "GET" not in stderr


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--port", "70000"], "--port: must be a port number from 1 to 65535, got '70000'"),
        (["--port", "http"], "--port: must be a port number from 1 to 65535, got 'http'"),
        (["--host", "no-such-host.invalid"], "use an address of this machine for --host"),
        (["--host", "192.0.2.1"], "use an address of this machine for --host"),  # TEST-NET-1
    ],
)
def test_search_dashboard_bad_host_or_port_is_one_line(reported_study, tmp_path, flags, says):
    run = run_module(
        "search.dashboard", "--storage", reported_study.url, *flags, cwd=tmp_path, timeout=60
    )
    assert run.returncode == 2
    assert says in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
