"""The report as text: report.md, the dashboard note, the stdout summary, the cross-task table."""

from search.fidelity import format_fidelity
from search.report.ablation import LABELS
from search.report.robustness import NOISE_FACTOR
from search.report.summary import SUBSET_SHARE


def fmt(value: object, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return lines


def _seeds(count: int) -> str:
    return "1 seed" if count == 1 else f"{count} seeds"


def _saved_by(pruning: dict) -> str:
    """What saved the epochs: pruning, early stopping, or both."""
    pruned = pruning["pruned_epochs_saved"]
    rest = pruning["epochs_unpruned"] - pruning["epochs_run"] - pruned
    if pruned == rest == 0:
        return "every trial trained all its epochs"
    if rest <= 0:
        return f"{pruned} epochs, all by pruning"
    if pruned == 0:
        return f"{rest} epochs, all by early stopping"
    return f"{pruned} epochs by pruning, {rest} by early stopping"


def best_table(report: dict) -> list[str]:
    """Best trial beside the baselines: the table the dashboard note shows as well."""
    key = report["metric"]["key"]
    best = report["best"]
    rows = [
        [
            f"**best** (trial {best['number']})",
            best["regularizers"],
            best["val_loss"],
            best[key],
            best["val_gap"],
            best["test_gap"],
            "-",
        ]
    ]
    for b in report["baselines"]:
        rows.append(
            [
                b["baseline"] if b["status"] == "measured" else f"{b['baseline']} ({b['status']})",
                b.get("regularizers", "-"),
                b.get("val_loss"),
                b.get(key),
                b.get("val_gap"),
                b.get("test_gap"),
                b.get("best_minus_baseline"),
            ]
        )
    header = ["configuration", "regularizers", "val loss", key]
    header += ["val - train gap", "test - train gap", f"best - baseline {key}"]
    return _table(header, rows)


def robustness_lines(report: dict) -> list[str]:
    robust = report.get("robustness")
    key = report["metric"]["key"]
    if robust is None:
        return ["Skipped (`--repeats 0`)."]
    lines = [f"Re-trained with {_seeds(robust['repeats'])} {robust['seeds']}; {key} mean ± std:"]
    lines.append("")
    rows = []
    for name, run in robust["runs"].items():
        std = "" if run["std"] is None else f" ± {run['std']:.4g}"
        rows.append([name, f"{fmt(run['mean'])}{std}", ", ".join(fmt(v) for v in run["values"])])
    lines += _table(["configuration", f"{key} mean ± std", "per seed"], rows)
    lines.append("")
    lines.append(
        f"A winner is called only when its mean lead exceeds {NOISE_FACTOR:g}x the larger std "
        "(Welch's t-test p given for reference):"
    )
    lines.append("")
    rows = [
        [name, c["lead"], c["noise"], c["welch_p"], c["verdict"]]
        for name, c in robust["comparisons"].items()
    ]
    lines += _table(["best vs", "mean lead", "noise threshold", "Welch p", "verdict"], rows)
    return lines


def ablation_lines(report: dict) -> list[str]:
    ablation = report.get("ablation")
    key = report["metric"]["key"]
    if ablation is None:
        why = "`--repeats 0`" if report.get("robustness") is None else "`--no-ablation`"
        return [f"Skipped ({why})."]
    robust = report["robustness"]
    lines = [
        f"Each regularizer of the best configuration reverted alone, re-trained with the same "
        f"{_seeds(robust['repeats'])}; it helps when the best configuration's lead over the "
        f"reverted one exceeds {NOISE_FACTOR:g}x the larger std.",
        "",
    ]
    rows = []
    for r in ablation["rows"]:
        run = r["run"]
        std = "" if run["std"] is None else f" ± {run['std']:.4g}"
        rows.append(
            [
                LABELS[r["regularizer"]],
                r["best_value"],
                r["reverted_to"],
                f"{fmt(run['mean'])}{std}",
                r["difference"],
                r["noise"],
                r["verdict"],
            ]
        )
    header = ["regularizer", "best value", "reverted to", f"{key} reverted (mean ± std)"]
    header += ["gain of the best (+: it helps)", "noise threshold", "verdict"]
    lines += _table(header, rows)
    lines += ["", f"**{ablation['finding'][0].upper()}{ablation['finding'][1:]}.**"]
    if ablation["path"]:
        lines += ["", "Ablation path (each step adds the change that helps most):", ""]
        path_rows = []
        for step in ablation["path"]:
            run = step["run"]
            std = "" if run["std"] is None else f" ± {run['std']:.4g}"
            added = "reference" if step["added"] is None else f"+ {LABELS[step['added']]}"
            path_rows.append([added, f"{fmt(run['mean'])}{std}"])
        lines += _table(["step", f"{key} mean ± std"], path_rows)
    return lines


def fidelity_lines(report: dict) -> list[str]:
    fidelity = report["fidelity"]
    return [
        "Kendall's tau between each epoch's validation loss and the final (best) one, over the "
        "complete trials: how well an early epoch already ranks the trials, which is what a "
        "pruner relies on (1: the same order as at the end; '-': fewer than 5 trials).",
        "",
        *format_fidelity(fidelity["rows"]),
        "",
        f"In short: {fidelity['sentence']}.",
    ]


def render_report(report: dict) -> str:
    key = report["metric"]["key"]
    direction = "higher" if report["metric"]["higher_is_better"] else "lower"
    counts, pruning, best = report["counts"], report["pruning"], report["best"]
    lines = [
        f"# Regularization report: study `{report['study']}` ({report['task']})",
        "",
        _stamp(report),
        "",
        f"Selected on validation loss; {key} ({direction} is better) is for reporting only.",
        "",
        "## Best regularizers",
        "",
        f"Best trial {best['number']}: **{best['regularizers']}** — validation loss "
        f"{fmt(best['val_loss'])}, {key} {fmt(best[key])}.",
        "",
        *best_table(report),
        "",
        "Gaps are validation/test loss minus train loss at the best epoch: regularization "
        "should make them smaller.",
        "",
        "## Trials",
        "",
        f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed. "
        f"Epochs trained: {pruning['epochs_run']} of {pruning['epochs_unpruned']} an unpruned "
        f"search would have used ({pruning['epochs_per_trial']} per complete or pruned trial): "
        f"**{pruning['saving_percent']:.1f}% saved** ({_saved_by(pruning)}).",
        "",
        f"Top {len(report['top'])} trials:",
        "",
        *_table(
            ["trial", "regularizers", "val loss", key, "val - train gap", "epochs"],
            [
                [
                    t["number"],
                    t["regularizers"],
                    t["val_loss"],
                    t[key],
                    t["val_gap"],
                    t["epochs_run"],
                ]
                for t in report["top"]
            ],
        ),
        "",
        "## Seed robustness",
        "",
        *robustness_lines(report),
        "",
        "## Ablation: what each regularizer of the best adds",
        "",
        *ablation_lines(report),
        "",
        "## How far the early epochs can be trusted",
        "",
        *fidelity_lines(report),
        "",
        "## Parameter importances",
        "",
    ]
    if report["importances"]:
        lines += [reliability_line(report["importance_reliability"]), ""]
        lines += _table(["parameter", "importance"], list(report["importances"].items()))
        effect = report["top_param_effect"]
        if effect:
            lines += [
                "",
                f"Most important: {next(iter(report['importances']))}; {key} mean "
                f"{fmt(effect['better_mean'])} for {effect['better']} vs "
                f"{fmt(effect['worse_mean'])} for {effect['worse']}.",
            ]
    else:
        lines.append(f"Not available: {report['importance_error']}")
    lines += ["", "## Figures", ""]
    lines += [f"![{name}]({file})" for name, file in report["plots"].items()]
    return "\n".join(lines) + "\n"


def _stamp(report: dict) -> str:
    counts = report["counts"]
    return (
        f"Made {report['made_at']} from {sum(counts.values())} finished trials "
        f"({counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed)."
    )


def reliability_line(reliability: dict) -> str:
    """Whether to trust the importance ranking: too few trials, or how stable its top is."""
    n = reliability["complete_trials"]
    if not reliability["reliable"]:
        return (
            f"**Ranking not reliable yet**: {n} complete trials, and it takes about "
            f"{reliability['needed']} before the top parameter stops changing with the seed; "
            "no parameter is named most important."
        )
    return (
        f"Ranking stability: {reliability['top']} stays first in {reliability['top_kept']} of "
        f"{reliability['subsets']} random subsets of {SUBSET_SHARE:.0%} of the {n} complete "
        "trials."
    )


def render_note(report: dict) -> str:
    """The study note optuna-dashboard shows: the best-regularizer table and the verdicts.

    It stays in the study while the search goes on, so it says which trials it describes and
    how to bring it up to date.
    """
    lines = [f"## Best regularizers of `{report['study']}`", "", _stamp(report), ""]
    lines += [*best_table(report), ""]
    robust = report.get("robustness")
    if robust:
        for name, c in robust["comparisons"].items():
            lines.append(f"- best vs {name}: {c['verdict']} over {_seeds(robust['repeats'])}")
    if report.get("ablation"):
        lines.append(f"- ablation: {report['ablation']['finding']}")
    lines.append(f"- pruning and early stopping saved {report['pruning']['saving_percent']:.1f}%")
    lines.append(f"- early epochs: {report['fidelity']['sentence']}")
    lines += [
        "",
        "Trials finished after this note are not in it (the Best Trial panel may show a newer "
        f"best). To refresh it: `{report['refresh']}`",
    ]
    return "\n".join(lines) + "\n"


def render_stdout(report: dict) -> str:
    key = report["metric"]["key"]
    best, counts = report["best"], report["counts"]
    lines = [
        f"study {report['study']!r}: {counts['complete']} complete, {counts['pruned']} pruned, "
        f"{counts['fail']} failed; {report['pruning']['saving_percent']:.1f}% of epochs saved",
        f"best trial {best['number']}: {best['regularizers']} val_loss={fmt(best['val_loss'])} "
        f"{key}={fmt(best[key])}",
    ]
    robust = report.get("robustness")
    if robust:
        for name, run in robust["runs"].items():
            std = "" if run["std"] is None else f" ± {fmt(run['std'])}"
            lines.append(
                f"  {name}: {key} {fmt(run['mean'])}{std} over {_seeds(robust['repeats'])}"
                + (f" ({robust['comparisons'][name]['verdict']})" if name != "best" else "")
            )
    if report.get("ablation"):
        lines.append(f"ablation: {report['ablation']['finding']}")
    return "\n".join(lines)


def cross_task_rows(reports: list[dict]) -> list[dict]:
    rows = []
    for report in reports:
        reliability = report["importance_reliability"]
        top = next(iter(report["importances"]), None) if reliability["reliable"] else None
        effect = report["top_param_effect"]
        rows.append(
            {
                "study": report["study"],
                "task": report["task"],
                "metric": report["metric"]["key"],
                "best_regularizers": report["best"]["regularizers"],
                "most_important": top
                or f"not reliable yet ({reliability['complete_trials']} complete trials)",
                "importance": report["importances"].get(top),
                "moved_metric_by": effect["moved_by"] if effect else None,
                "ablation": report["ablation"]["finding"] if report.get("ablation") else None,
            }
        )
    return rows


def render_cross_task(rows: list[dict]) -> str:
    lines = ["# Cross-task summary", ""]
    lines += _table(
        [
            "study",
            "task",
            "best regularizers",
            "mattered most",
            "importance",
            "moved metric by",
            "ablation of the best",
        ],
        [
            [
                r["study"],
                r["task"],
                r["best_regularizers"],
                r["most_important"],
                r["importance"],
                f"{fmt(r['moved_metric_by'])} {r['metric']}",
                r["ablation"] or "-",
            ]
            for r in rows
        ],
    )
    lines += [
        "",
        '"Moved metric by": mean test metric of the better half of trials on that parameter '
        "minus the worse half (median split; by value for categories).",
    ]
    return "\n".join(lines) + "\n"
