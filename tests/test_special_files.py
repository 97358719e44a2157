"""FIFOs and devices given where nncli reads a file: refused at once (a reader that seeks or
reads to the end would block on a pipe without a writer, or read /dev/zero for ever),
except the config, which is read up to its size bound and may come from a pipe."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers_data import blobs, cli, table_text, write_yaml

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(folder, checkpoint) of a tiny table model."""
    root = tmp_path_factory.mktemp("special")
    X, y = blobs(n_per_class=6)
    (root / "train.csv").write_text(table_text(X, y), encoding="utf-8")
    cfg = write_yaml(root / "cfg.yaml", {"data": {"train": str(root / "train.csv")},
                                         "train": {"epochs": 1}})
    assert cli("train", cfg, "--out", root / "run", "--quiet").exit_code == 0
    return root, root / "run" / "checkpoints" / "last.npz"


def run(*args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A real process: a reader that blocked would hit the timeout and fail the test."""
    return subprocess.run([sys.executable, "-m", "nncli.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("what", ["data", "checkpoint"])
def test_a_named_pipe_as_data_or_checkpoint_is_one_error(tmp_path: Path, what: str,
                                                         model: tuple[Path, Path]) -> None:
    _, checkpoint = model
    fifo = tmp_path / ("train.csv" if what == "data" else "model.npz")
    os.mkfifo(fifo)
    if what == "data":
        cfg = write_yaml(tmp_path / "cfg.yaml", {"data": {"train": str(fifo)}})
        proc = run("train", cfg, "--out", tmp_path / "run", "--quiet")
        expected = f"Error: {fifo}: is a named pipe, not a file; a data source must be a " \
                   f"regular file\n"
    else:
        proc = run("eval", fifo, model[0] / "train.csv")
        expected = f"Error: {fifo}: is a named pipe, not a file; a checkpoint must be a " \
                   f"regular file\n"
    assert proc.returncode == 2 and proc.stderr == expected, proc.stderr
    assert not (tmp_path / "run").exists()


def test_a_device_as_image_is_one_error_in_predict(tmp_path: Path) -> None:
    from nncli.data.images import load_image
    from nncli.errors import NncliError

    with pytest.raises(NncliError, match="/dev/zero: is a device, not a file; an image must"):
        load_image("/dev/zero", None, "L")


def test_a_config_may_come_from_a_pipe(model: tuple[Path, Path], tmp_path: Path) -> None:
    """``nncli train <(make-config)``: process substitution hands over a pipe."""
    root, _ = model
    text = f"data: {{train: {root / 'train.csv'}}}\ntrain: {{epochs: 1}}\n"
    fifo = tmp_path / "cfg.yaml"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "w", encoding="utf-8") as handle:
            handle.write(text)

    writer = threading.Thread(target=write)
    writer.start()
    proc = run("train", fifo, "--out", tmp_path / "run", "--quiet")
    writer.join(timeout=10)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "checkpoints" / "last.npz").exists()
