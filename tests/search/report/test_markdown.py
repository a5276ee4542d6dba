import copy
import json

from search.report.markdown import render_note, render_report, render_stdout


def one_seed_report(reported_study) -> dict:
    """The reported study's real report, as --repeats 1 would make it: no std anywhere."""
    report = json.loads((reported_study.out / "report.json").read_text())
    report = copy.deepcopy(report)
    robust = report["robustness"]
    robust["repeats"], robust["seeds"] = 1, robust["seeds"][:1]
    for run in robust["runs"].values():
        run["values"], run["std"] = run["values"][:1], None
    return report


def test_one_seed_reads_as_one_seed_without_a_std(reported_study):
    report = one_seed_report(reported_study)
    texts = render_report(report), render_note(report), render_stdout(report)
    for text in texts:
        assert "1 seeds" not in text and "± -" not in text
    assert "Re-trained with 1 seed [" in texts[0]
    assert " over 1 seed" in texts[2]


def test_a_measured_baseline_is_not_labelled_measured(reported_study):
    text = render_report(one_seed_report(reported_study))
    assert "no regularization (reference) |" in text
    assert "(measured)" not in text


def test_the_epochs_saved_say_what_saved_them(reported_study):
    report = one_seed_report(reported_study)
    pruning = report["pruning"]
    pruning.update(epochs_unpruned=100, epochs_run=60, pruned_epochs_saved=40)
    assert "(40 epochs, all by pruning)" in render_report(report)
    pruning.update(pruned_epochs_saved=0)
    assert "(40 epochs, all by early stopping)" in render_report(report)
    pruning.update(pruned_epochs_saved=10)
    assert "(10 epochs by pruning, 30 by early stopping)" in render_report(report)
    pruning.update(epochs_run=100, pruned_epochs_saved=0)
    assert "(every trial trained all its epochs)" in render_report(report)
