"""The CLI parses, calls the library and prints; the library does the work and never prints.
gradcheck's work (nncli.checking) as rows and notes; short functions where the CLI is."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from helpers_data import blobs, write_table, write_yaml

from nncli.checking import (
    GRADCHECK_HEADER,
    check_config_file,
    parse_samples,
    steps_of,
    summarize,
)
from nncli.nn.gradcheck import DEFAULT_SAMPLES, GradcheckReport, ParamCheck

PACKAGE = Path(__file__).resolve().parents[1] / "nncli"
# Every module of the package, as a path relative to it without ".py" ("data/images").
SHORT_MODULES = tuple(sorted(str(p.relative_to(PACKAGE).with_suffix(""))
                             for p in PACKAGE.rglob("*.py")))
# The library: everything but the CLI (and the start-up handler of __main__, if any).
LIBRARY_MODULES = tuple(m for m in SHORT_MODULES if m not in ("cli", "__main__"))
MAX_FUNCTION_LINES = 60


def _functions(module: str) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    return [node for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


@pytest.mark.parametrize("module", SHORT_MODULES)
def test_no_function_is_longer_than_60_lines(module: str) -> None:
    """From the def line to the last line of the body."""
    long = {f.name: f.end_lineno - f.lineno + 1 for f in _functions(module)
            if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES}
    assert long == {}


@pytest.mark.parametrize("module", LIBRARY_MODULES)
def test_the_library_neither_prints_nor_imports_click(module: str) -> None:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id != "print", (module, node.lineno)
        if isinstance(node, ast.Import):
            assert all(a.name.split(".")[0] != "click" for a in node.names), module
        if isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] != "click", module


@pytest.mark.parametrize("text,samples", [(None, DEFAULT_SAMPLES), ("all", None),
                                          (" ALL ", None), ("50", 50), ("1", 1)])
def test_samples_option(text: str | None, samples: int | None) -> None:
    assert parse_samples(text) == samples


@pytest.mark.parametrize("text", ["0", "-3", "x", "2.5", ""])
def test_samples_option_refuses_what_is_no_positive_integer(text: str) -> None:
    with pytest.raises(ValueError, match="is not a positive integer or 'all'"):
        parse_samples(text)


def test_a_report_becomes_rows_notes_and_failures() -> None:
    report = GradcheckReport(tol=1e-6, params={
        "W1": ParamCheck(max_rel_error=2e-3, checked=10, entries=5000, retried=3,
                         worst_index=(1, 2), worst_pair=(1.0, 0.998), worst_h=1e-5,
                         worst_richardson=True),
        "b1": ParamCheck(max_rel_error=0.0, checked=4, entries=4, skipped_at_kink=2,
                         worst_h=1e-5),
        "W2": ParamCheck(),
    })
    result = summarize(report, tol=1e-6)
    assert len(GRADCHECK_HEADER) == len(result.rows[0])
    assert result.rows == [["W1", "10", "5,000", "2.00e-03", "1e-05,5e-06", "FAIL"],
                           ["b1", "4", "4", "0", "1e-05", "ok"],
                           ["W2", "0", "0", "0", "-", "ok"]]
    assert (result.skipped_at_kink, result.retried) == (2, ["W1 3"])
    assert (result.checked, result.entries, result.ok) == (14, 5004, False)
    assert result.failures == ["W1 max relative error 0.002 at index (1, 2) (analytic 1, "
                               "numeric 0.998 at h=1e-05,5e-06)"]
    assert steps_of(ParamCheck(worst_h=1e-7)) == "1e-07"


def test_check_config_file_checks_and_reports_progress_without_printing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    X, y = blobs(n_per_class=6, n_features=3)
    data = write_table(tmp_path / "train.csv", X, np.array(["a", "b", "c"])[y])
    config = write_yaml(tmp_path / "cfg.yaml", {"data": {"train": str(data)},
                                                "model": {"hidden": [4], "activation": "tanh"}})
    calls: list[tuple[str, int, int, int]] = []
    result = check_config_file(config, ["model.hidden=[5]"], samples=None, tol=1e-6,
                               progress=lambda *args: calls.append(args))
    assert result.ok and result.failures == []
    assert [row[0] for row in result.rows] == ["W1", "b1", "W2", "b2"]
    assert result.entries == 3 * 5 + 5 + 5 * 3 + 3 == result.checked
    assert ("W1", 0, 15, 15) in calls and ("b2", 3, 3, 3) in calls
    assert capsys.readouterr() == ("", "")
