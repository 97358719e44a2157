"""Bad files in a parallel image decode: the first bad file by order is the one named.

Regression for ``Error: internal error: CancelledError``: after the first failure the pool
loop cancelled the chunks not yet started but kept waiting on them, and asking a cancelled
future for its result raises. Each case decodes a few hundred small PNGs on a pool of two
workers (processes and threads) in chunks of four files (``MAX_CHUNK``), so that a failure
leaves many chunks unstarted, and asserts the one-line message of the earliest bad file.
"""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner, Result
from PIL import Image

from nncli.cli import main
from nncli.data import images
from nncli.errors import NncliError

N = 300  # files per folder: a few hundred, as in the bug report
W, H = 6, 4  # every good image is 6 wide, 4 high
ODD_W, ODD_H = 5, 7  # the wrong-size image


def png(path: Path, width: int, height: int, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width), value, dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``N`` good W x H greyscale PNGs, two classes, written once per module."""
    root = tmp_path_factory.mktemp("template")
    for i in range(N):
        png(root / ("a" if i < N // 2 else "b") / f"{i:03d}.png", W, H, value=i % 256)
    return root


@pytest.fixture
def paths(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A fresh copy of the template's files, in the reader's order; chunks of 4 files."""
    monkeypatch.setattr(images, "MAX_CHUNK", 4)
    shutil.copytree(template, tmp_path / "data")
    return sorted(str(p) for p in (tmp_path / "data").rglob("*.png"))


def spoil(path: str, kind: str) -> None:
    """Make ``path`` a wrong-size image or a corrupt file."""
    if kind == "size":
        png(Path(path), ODD_W, ODD_H)
    else:
        Path(path).write_bytes(b"\x89PNG\r\n\x1a\n but then nothing sensible")


def expected(paths: list[str], index: int, kind: str) -> str:
    """The regex the error for bad file ``paths[index]`` must match (one line)."""
    if kind == "size":
        return (f"^{re.escape(paths[0])} is {W}x{H} but {re.escape(paths[index])} is "
                f"{ODD_W}x{ODD_H} — set data\\.image\\.size: \\[width, height\\]")
    return f"^{re.escape(paths[index])}: cannot decode image \\("


@pytest.mark.parametrize("pool", ["process", "thread"])
@pytest.mark.parametrize("kind", ["size", "corrupt"])
@pytest.mark.parametrize("where", ["early", "late"])
def test_the_first_bad_file_by_order_is_named(paths: list[str], pool: str, kind: str,
                                              where: str) -> None:
    first = 1 if where == "early" else N - 6  # the 2nd file, or one near the end
    spoil(paths[first], kind)
    spoil(paths[first + 4], "corrupt" if kind == "size" else "size")  # a later bad file
    with pytest.raises(NncliError) as caught:
        images.decode_images(paths, None, "L", workers=2, pool=pool)
    message = str(caught.value)
    assert re.search(expected(paths, first, kind), message) and "\n" not in message, message


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_photos_of_many_sizes_name_the_first_two_files(paths: list[str], pool: str) -> None:
    for i in range(1, N, 2):  # every other image has its own size, as a folder of photos
        png(Path(paths[i]), W + 1 + i % 5, H + 1 + i % 3)
    with pytest.raises(NncliError, match=f"^{re.escape(paths[0])} is {W}x{H} but "
                                         f"{re.escape(paths[1])} is {W + 2}x{H + 2} — set "
                                         r"data\.image\.size"):
        images.decode_images(paths, None, "L", workers=2, pool=pool)


def test_an_earlier_failure_that_finishes_last_still_wins(paths: list[str],
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """Chunk 0 (files 0-3, file 2 bad) is held back until the pool loop has seen chunk 1's
    failure (file 4): the later failure arrives first, the earlier one is still named."""
    spoil(paths[2], "corrupt")
    spoil(paths[4], "corrupt")
    release = threading.Event()
    decode, wait = images._decode, images.wait_futures

    def held_decode(path: str, *args: Any) -> np.ndarray:
        if path == paths[1] and threading.current_thread() is not threading.main_thread():
            assert release.wait(timeout=60), "the pool loop never saw a finished chunk"
        return decode(path, *args)

    def wait_then_release(*args: Any, **kw: Any) -> Any:
        result = wait(*args, **kw)
        release.set()
        return result

    monkeypatch.setattr(images, "_decode", held_decode)
    monkeypatch.setattr(images, "wait_futures", wait_then_release)
    with pytest.raises(NncliError, match=expected(paths, 2, "corrupt")):
        images.decode_images(paths, None, "L", workers=2, pool="thread")


def test_the_serial_decode_gives_the_same_message(paths: list[str]) -> None:
    spoil(paths[1], "size")
    with pytest.raises(NncliError, match=expected(paths, 1, "size")):
        images.decode_images(paths, None, "L", workers=1)


# ---------------------------------------------------------------- through the CLI


@pytest.fixture
def photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A folder of 300 "photos" of random sizes (the first 30x20, the second 40x25) and a
    config without data.image.size; the decode is forced onto a pool in chunks of 4."""
    monkeypatch.setenv("NNCLI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(images, "PARALLEL_MIN_SECONDS", 0.0)
    monkeypatch.setattr(images, "SPAWN_MIN_SECONDS", 0.0)
    monkeypatch.setattr(images, "MAX_CHUNK", 4)
    rng = np.random.default_rng(7)
    folder = tmp_path / "photos"
    for i in range(N):
        w, h = (30, 20) if i == 0 else (40, 25) if i == 1 else rng.integers(20, 41, size=2)
        png(folder / ("cat" if i < N // 2 else "dog") / f"img{i:03d}.png", int(w), int(h), i % 256)
    config = tmp_path / "photos.yaml"
    config.write_text(yaml.safe_dump({"data": {"train": str(folder)}, "model": {"hidden": [8]},
                                      "train": {"epochs": 1}}), encoding="utf-8")
    return folder, config


MIXED = (r"photos/cat/img000\.png is 30x20 but .*photos/cat/img001\.png is 40x25 — set "
         r"data\.image\.size")


def run(*args: Any) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(params=["process", "thread"])
def pool_choice(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Make decode_images's own pool choice (by the first image's cost) come out one way."""
    slow = request.param == "thread"
    monkeypatch.setattr(images, "THREAD_MIN_SECONDS", 0.0 if slow else float("inf"))
    monkeypatch.setattr(images, "THREAD_MIN_BYTES", 0 if slow else 1 << 40)
    return str(request.param)


@pytest.mark.parametrize("command", ["train", "gradcheck"])
def test_cli_mixed_sizes_is_one_error_line(photos: tuple[Path, Path], pool_choice: str,
                                           command: str) -> None:
    folder, config = photos
    extra = ["--quiet", "--out", folder.parent / "run"] if command == "train" else []
    result = run(command, config, *extra)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and re.search(MIXED, lines[0]), lines[0]
    assert result.stdout == "" and not (folder.parent / "run").exists()


def test_cli_info_reports_the_mixed_sizes(photos: tuple[Path, Path], pool_choice: str) -> None:
    """``info`` shows what it can and warns about the data (its documented behaviour)."""
    _, config = photos
    result = run("info", config)
    assert "internal error" not in result.stderr, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert result.exit_code == 0 and len(warnings) == 1, result.stderr
    assert re.search(MIXED, warnings[0]), warnings[0]
