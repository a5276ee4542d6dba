import json

from search.fidelity import Curve
from search.tools.fidelity import curves_from_bank, main


def test_bank_records_are_curves_and_a_diverged_run_is_left_out():
    params = {"dropout": 0.2, "activation": "relu"}
    records = [
        {"params": params, "val_loss": [1.4, 1.2, 1.3], "diverged": False},
        {"params": params, "val_loss": [1.4], "diverged": True},
    ]
    assert curves_from_bank(records) == [Curve(params, [1.4, 1.2, 1.3], 1.2)]


def test_the_cli_reads_a_bank_or_a_real_study(tmp_path, capsys, reported_study):
    bank = tmp_path / "bank.jsonl"
    bank.write_text(
        "".join(
            json.dumps(
                {
                    "params": {"dropout": i / 10},
                    "val_loss": [2 - i / 10, 1 - i / 10],
                    "diverged": False,
                }
            )
            + "\n"
            for i in range(6)
        )
    )
    assert main(["--bank", str(bank)]) == 0
    out = capsys.readouterr().out
    assert "6 complete curves" in out and "| all | 6 | 1.00 | 1.00 |" in out
    assert main(["--storage", reported_study.url, "--study-name", "linear"]) == 0
    assert "study 'linear':" in capsys.readouterr().out
    assert main(["--storage", reported_study.url, "--study-name", "nope"]) == 2
    assert capsys.readouterr().err.startswith("python -m search.tools.fidelity: error:")
