"""The report as text: report.md, the dashboard note, the stdout summary, the cross-task table."""

from search.fidelity import format_fidelity
from search.report.ablation import LABELS, mattered
from search.report.robustness import NOISE_FACTOR
from search.report.summary import SUBSET_SHARE


def fmt(value: object, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def mean_std(run: dict) -> str:
    """ "mean ± std", or the mean alone where one seed gives no std."""
    std = "" if run["std"] is None else f" ± {run['std']:.4g}"
    return f"{fmt(run['mean'])}{std}"


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


def finalist_sentence(report: dict) -> str | None:
    """How the best was chosen, where the report re-trained finalists."""
    finalists = report.get("finalists")
    if not finalists:
        return None
    rows, seeds = finalists["rows"], len(report["robustness"]["seeds"])
    first = rows[0]["trial"]["number"]
    how = (
        f"chosen among the {len(rows)} trials of lowest validation loss by their mean "
        f"validation loss over {_seeds(seeds)}"
    )
    if report["best"]["number"] == first:
        return f"{how}; it is the search's own best"
    return f"{how}, where the search's own best was trial {first}"


def finalist_lines(report: dict) -> list[str]:
    finalists = report.get("finalists")
    if not finalists:
        return []
    key = report["metric"]["key"]
    rows = [
        [
            r["trial"]["number"],
            r["trial"]["regularizers"],
            r["trial"]["val_loss"],
            mean_std({"mean": r["run"]["val_loss_mean"], "std": r["run"]["val_loss_std"]}),
            mean_std(r["run"]),
            "**best**" if i == finalists["chosen"] else "",
        ]
        for i, r in enumerate(finalists["rows"])
    ]
    header = ["trial", "regularizers", "search val loss", "re-trained val loss (mean ± std)"]
    header += [f"re-trained {key} (mean ± std)", "chosen"]
    return ["", f"The best was {finalist_sentence(report)}:", "", *_table(header, rows)]


def robustness_lines(report: dict) -> list[str]:
    robust = report.get("robustness")
    key = report["metric"]["key"]
    if robust is None:
        earlier = report.get("earlier_retraining")
        return [f"Skipped (`--repeats 0`){f'; {earlier}' if earlier else ''}."]
    lines = []
    if report.get("retrained_at"):
        lines += [
            f"Kept from the report of {report['retrained_at']} (`--repeats 0` trains nothing; "
            "the best configuration is the same).",
            "",
        ]
    lines += [
        f"Re-trained with {_seeds(robust['repeats'])} {robust['seeds']}; {key} mean ± std:",
        "",
    ]
    rows = []
    for name, run in robust["runs"].items():
        rows.append([name, mean_std(run), ", ".join(fmt(v) for v in run["values"])])
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
        return [f"Skipped ({report.get('ablation_skipped', why)})."]
    robust = report["robustness"]
    lines = [
        f"Each regularizer of the best configuration reverted alone, re-trained with the same "
        f"{_seeds(robust['repeats'])}; it helps when the best configuration's lead over the "
        f"reverted one exceeds {NOISE_FACTOR:g}x the larger std.",
        "",
    ]
    rows = []
    for r in ablation["rows"]:
        rows.append(
            [
                LABELS[r["regularizer"]],
                r["best_value"],
                r["reverted_to"],
                mean_std(r["run"]),
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
            added = "reference" if step["added"] is None else f"+ {LABELS[step['added']]}"
            path_rows.append([added, mean_std(step["run"])])
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
        f"Database: `{report['storage']}`. {_stamp(report)}",
        "",
        f"Selected on validation loss; {key} ({direction} is better) is for reporting only.",
        "",
        "## Best regularizers",
        "",
        f"Best trial {best['number']}: **{best['regularizers']}** — validation loss "
        f"{fmt(best['val_loss'])}, {key} {fmt(best[key])}.",
        *finalist_lines(report),
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
        lines += disagreement_lines(report)
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


def disagreement_lines(report: dict) -> list[str]:
    """Where the ablation finds that a regularizer matters and the importances rank it below
    the top, say why both can hold, so that the report does not read as contradicting itself."""
    ablation = report.get("ablation")
    if not ablation:
        return []
    ranked = list(report["importances"])
    lines = []
    for name in mattered(ablation):
        if name in ranked and ranked.index(name) > 0:
            lines.append(
                f"The ablation finds that {LABELS[name]} matters for the best configuration, "
                f"while the importances rank {name} {ranked.index(name) + 1} of {len(ranked)}: "
                "an importance says how much a parameter moves the validation loss across the "
                "whole search, the ablation what it does for the winner. For your own training "
                "go by the ablation; the slice plot shows it."
            )
    return ["", *lines] if lines else []


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
    if finalist_sentence(report):
        lines.append(f"- the best was {finalist_sentence(report)}")
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
    if finalist_sentence(report):
        lines.append(f"  {finalist_sentence(report)}")
    robust = report.get("robustness")
    if robust:
        for name, run in robust["runs"].items():
            lines.append(
                f"  {name}: {key} {mean_std(run)} over {_seeds(robust['repeats'])}"
                + (f" ({robust['comparisons'][name]['verdict']})" if name != "best" else "")
            )
    if report.get("ablation"):
        lines.append(f"ablation: {report['ablation']['finding']}")
    return "\n".join(lines)


def cross_task_rows(reports: list[dict]) -> list[dict]:
    """One row per study; `won` marks the best study of each task and metric: by the re-trained
    test metric where every study of the task has one, else by the best trial's."""
    rows = []
    for report in reports:
        reliability = report["importance_reliability"]
        top = next(iter(report["importances"]), None) if reliability["reliable"] else None
        effect = report["top_param_effect"]
        key = report["metric"]["key"]
        retrained = (report.get("robustness") or {}).get("runs", {}).get("best")
        rows.append(
            {
                "study": report["study"],
                "storage": report.get("storage"),
                "task": report["task"],
                "metric": key,
                "higher_is_better": report["metric"]["higher_is_better"],
                "best_trial": report["best"]["number"],
                "best_val_loss": report["best"]["val_loss"],
                "best_metric": report["best"][key],
                "retrained_mean": retrained["mean"] if retrained else None,
                "retrained_std": retrained["std"] if retrained else None,
                "retrained_seeds": len(retrained["seeds"]) if retrained else 0,
                "best_regularizers": report["best"]["regularizers"],
                "most_important": top
                or f"not reliable yet ({reliability['complete_trials']} complete trials)",
                "importance": report["importances"].get(top),
                "moved_metric_by": effect["moved_by"] if effect else None,
                "ablation": report["ablation"]["finding"] if report.get("ablation") else None,
            }
        )
    _mark_winners(rows)
    return rows


def _mark_winners(rows: list[dict]) -> None:
    for task in {(r["task"], r["metric"]) for r in rows}:
        group = [r for r in rows if (r["task"], r["metric"]) == task]
        retrained = all(r["retrained_mean"] is not None for r in group)
        by = "retrained_mean" if retrained else "best_metric"
        scored = [r for r in group if r[by] is not None]
        sign = 1 if group[0]["higher_is_better"] else -1
        winner = max(scored, key=lambda r: sign * r[by]) if len(scored) > 1 else None
        for r in group:
            if len(group) == 1:
                r["won"] = "only study of its task"
            elif r is winner:
                r["won"] = f"yes ({'re-trained' if retrained else 'best trial'} {r['metric']})"
            else:
                r["won"] = "no"


def render_cross_task(rows: list[dict]) -> str:
    names = [r["study"] for r in rows]
    lines = ["# Cross-task summary", ""]
    lines += _table(
        [
            "study",
            "task",
            "won",
            "best val loss",
            "best trial's test metric",
            "re-trained test metric",
            "best regularizers",
            "mattered most",
            "moved metric by",
            "ablation of the best",
        ],
        [
            [
                # A name held by two databases says which one it is.
                r["study"] if names.count(r["study"]) == 1 else f"{r['study']} ({r['storage']})",
                r["task"],
                r["won"],
                r["best_val_loss"],
                f"{fmt(r['best_metric'])} {r['metric']} (trial {r['best_trial']})",
                _retrained_text(r),
                r["best_regularizers"],
                r["most_important"],
                _moved_text(r),
                r["ablation"] or "-",
            ]
            for r in rows
        ],
    )
    lines += [
        "",
        "Won: the best study of its task, by the re-trained test metric where every study of "
        "the task was re-trained, else by the best trial's. Moved metric by: mean test "
        "metric of the better half of trials on the most important parameter minus the worse "
        "half (median split; by value for categories); '-' until the ranking is reliable.",
    ]
    return "\n".join(lines) + "\n"


def _moved_text(row: dict) -> str:
    moved = row["moved_metric_by"]
    return "-" if moved is None else f"{fmt(moved)} {row['metric']}"


def _retrained_text(row: dict) -> str:
    if row["retrained_mean"] is None:
        return "-"
    std = "" if row["retrained_std"] is None else f" ± {row['retrained_std']:.4g}"
    return f"{fmt(row['retrained_mean'])}{std} over {_seeds(row['retrained_seeds'])}"
