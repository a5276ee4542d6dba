from conftest import run_module


def test_run_module_keeps_the_callers_pythonpath(tmp_path, monkeypatch):
    """A machine whose packages sit on PYTHONPATH (the H200's did) must still find them."""
    packages = tmp_path / "packages"
    packages.mkdir()
    (packages / "probe_module.py").write_text("import search.flags\nprint('found both')\n")
    monkeypatch.setenv("PYTHONPATH", str(packages))
    done = run_module("probe_module", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "found both"
