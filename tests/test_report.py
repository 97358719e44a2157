"""nncli report and nncli train --report: one self-contained HTML page (valid HTML, every
picture an inlined PNG, no JavaScript, no network reference) naming the classes and holding
the config; a regression run's page shows its metrics; without matplotlib, --report is an
error before the training starts."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers_data import blobs, cli, config_doc, hide_package, train_run, write_table, write_yaml
from PIL import Image
from test_regression import regression_doc, write_regression_table

needs_matplotlib = pytest.mark.skipif(
    find_spec("matplotlib") is None, reason="matplotlib is not installed (the plot extra)")

DATA_URI = "data:image/png;base64,"
VOID = {"meta", "img", "br", "hr", "link", "input"}


class Page(HTMLParser):
    """The tags of a page, checked to nest properly, its <img> sources and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.images: list[str] = []
        self.scripts = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        self.scripts += tag == "script"
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, (tag, self.open[-3:])
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(path: Path) -> Page:
    """The page at ``path``, parsed; asserts it is well formed and self-contained."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"https?://", text)
    page = Page()
    page.feed(text)
    page.close()
    assert page.open == [] and page.scripts == 0
    assert page.images, "no pictures"
    for src in page.images:
        assert src.startswith(DATA_URI)
        with Image.open(io.BytesIO(base64.b64decode(src[len(DATA_URI):]))) as image:
            assert image.format == "PNG"
            assert np.asarray(image.convert("RGB")).std() > 1.0
    return page


def table_doc(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    X, y = blobs(n_per_class=10, n_features=4, n_classes=3)
    data = write_table(tmp_path / "t.csv", X, [f"kind_{v}" for v in y],
                       header=["alpha", "beta", "gamma", "delta"])
    return config_doc(data, train={"epochs": 3, "batch_size": 8, "lr": 0.1}, **sections)


@needs_matplotlib
def test_report_is_valid_html_with_inlined_pictures_classes_and_config(tmp_path: Path
                                                                       ) -> None:
    run = train_run(tmp_path / "run", table_doc(tmp_path, data={"val_split": 0.3}))
    result = cli("report", run)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{run / 'report.html'}\n"
    page = parsed(run / "report.html")
    assert len(page.images) == 3  # curves, confusion, weights
    text = "".join(page.text)
    for name in ("kind_0", "kind_1", "kind_2", "precision", "best epoch"):
        assert name in text
    assert (run / "config.yaml").read_text(encoding="utf-8") in text
    out = tmp_path / "elsewhere.html"
    result = cli("report", run, "-o", out)
    assert result.exit_code == 0 and result.stdout == f"{out}\n"
    assert out.read_bytes() == (run / "report.html").read_bytes()


@needs_matplotlib
def test_train_report_writes_the_page_into_the_run(tmp_path: Path) -> None:
    run = train_run(tmp_path / "run", table_doc(tmp_path), "--report")
    text = "".join(parsed(run / "report.html").text)
    assert "kind_2" in text and "data.train" in text


@needs_matplotlib
def test_a_regression_report_shows_its_metrics_and_predictions(tmp_path: Path) -> None:
    write_regression_table(tmp_path / "train.csv", 80, seed=0)
    write_regression_table(tmp_path / "test.csv", 30, seed=1)
    run = train_run(tmp_path / "run", regression_doc(tmp_path))
    result = cli("report", run)
    assert result.exit_code == 0, result.stderr
    page = parsed(run / "report.html")
    assert len(page.images) == 3  # curves, predicted against actual, weights
    text = "".join(page.text)
    assert "rmse" in text and "r2" in text and "data.test" in text
    assert "precision" not in text


def test_a_folder_without_a_run_is_one_error(tmp_path: Path) -> None:
    result = cli("report", tmp_path)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1


def test_train_report_without_matplotlib_fails_before_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_yaml(tmp_path / "cfg.yaml", table_doc(tmp_path))
    hide_package(monkeypatch, "matplotlib")
    result = cli("train", config, "--out", tmp_path / "run", "--quiet", "--report")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and 'pip install "nncli[plot]"' in result.stderr
    assert not (tmp_path / "run").exists()
