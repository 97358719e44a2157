"""report.html as a browser shows it: headless Chromium (Debian's ``chromium``, which
``.ci/run`` installs) loads the page of a real digits run; every picture decodes (natural
width > 0) and the page logs nothing to the console."""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib.util import find_spec
from pathlib import Path

import pytest
from helpers_data import cli

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs "
                                                "Debian's chromium; apt-get install chromium)"),
    pytest.mark.skipif(find_spec("matplotlib") is None,
                       reason="matplotlib is not installed (the plot extra)"),
]

# Appended to a copy of the page (the report itself has no script): once everything has
# loaded, the title counts the images and those that decoded.
PROBE = ('<script>window.addEventListener("load", () => { const all = [...document.images];'
         ' document.title = "probe " + all.length + " " + all.filter(i => i.complete && '
         'i.naturalWidth > 0).length; });</script>')


def browse(page: Path) -> tuple[str, str]:
    """(the DOM after load, Chromium's log) of ``page``."""
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    return proc.stdout, proc.stderr


def loaded_images(dom: str) -> tuple[int, int]:
    match = re.search(r"<title>probe (\d+) (\d+)</title>", dom)
    assert match, dom[:500]
    return int(match[1]), int(match[2])


def probed(report: Path, tmp_path: Path, extra: str = "") -> Path:
    copy = tmp_path / "probed.html"
    copy.write_text(report.read_text(encoding="utf-8").replace(
        "</body>", extra + PROBE + "</body>"), encoding="utf-8")
    return copy


def test_every_picture_of_a_digits_report_loads_without_console_errors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    run = tmp_path / "digits"
    result = cli("train", "configs/digits-linear-softmax.yaml", "--out", str(run), "--quiet",
                 "--set", "train.epochs=3", "--report")
    assert result.exit_code == 0, result.output
    dom, log = browse(probed(run / "report.html", tmp_path))
    total, decoded = loaded_images(dom)
    assert total >= 3 and decoded == total
    assert "CONSOLE" not in log, log


def test_the_probe_sees_a_broken_picture_and_a_console_error(tmp_path: Path) -> None:
    """The check above can fail: a picture that does not decode and a console message."""
    page = tmp_path / "page.html"
    page.write_text("<html><head><title>t</title></head><body></body></html>")
    bad = '<img src="data:image/png;base64,AAAA"><script>console.error("boom")</script>'
    dom, log = browse(probed(page, tmp_path, bad))
    assert loaded_images(dom) == (1, 0)
    assert "CONSOLE" in log and "boom" in log
