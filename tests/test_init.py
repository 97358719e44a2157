"""``nncli init DATA``: a commented starter config that parses, validates and trains as is.

Each source is built in ``tmp_path`` (tables of blobs, folders of small PNGs of one or many
sizes, greyscale or colour); the written config is read back with ``yaml.safe_load`` and
``config_from_dict``, then trained with ``nncli train``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers_data import blobs, cli, separable, table_text
from PIL import Image

from nncli import starter
from nncli.config import config_from_dict
from nncli.errors import NncliError

NAMES = np.array(["cat", "dog", "frog"])


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def init(*args: Any) -> tuple[str, dict[str, Any]]:
    """``nncli init ARGS`` to stdout: (the text, its parsed document); asserts exit 0."""
    result = cli("init", *args)
    assert result.exit_code == 0, result.stderr
    doc = yaml.safe_load(result.stdout)
    config_from_dict(doc)  # a valid config
    return result.stdout, doc


def one_error(result: Any) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), \
        result.stderr
    assert result.stdout == ""
    return lines[0]


def train_json(config: Path, out: Path, *extra: str) -> dict[str, Any]:
    result = cli("train", config, "--out", out, "--quiet", "--json", *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def png(path: Path, pixels: np.ndarray, **params: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path, **params)
    return path


# ---------------------------------------------------------------- tables


def test_table_config_trains_as_written(tmp_path: Path) -> None:
    X, y = separable(n_per_class=40)  # 120 rows: the MLP
    data = write(tmp_path / "train.csv", table_text(X, NAMES[y]))
    config = tmp_path / "starter.yaml"
    result = cli("init", data, "-o", config)
    assert result.exit_code == 0 and result.stdout == "", result.stderr
    assert result.stderr == f"wrote {config}; train it with: nncli train {config}\n"
    doc = yaml.safe_load(config.read_text(encoding="utf-8"))
    cfg = config_from_dict(doc)
    assert (cfg.data.train, cfg.data.label_column, cfg.data.val_split) == (str(data), "label",
                                                                          0.2)
    assert (cfg.model.hidden, cfg.train.optimizer, cfg.train.lr_schedule) == ((64,), "adam",
                                                                              "cosine")
    assert cfg.train.early_stopping == {"patience": 10, "metric": "val_loss", "min_delta": 0.0}
    summary = train_json(config, tmp_path / "run")  # the whole run, as written
    assert summary["best"]["val_acc"] == 1.0 and summary["epochs"] <= cfg.train.epochs


def test_train_keys_are_written_out_and_commented(tmp_path: Path) -> None:
    X, y = blobs(n_per_class=40)
    text, doc = init(write(tmp_path / "train.csv", table_text(X, NAMES[y])))
    assert set(doc["train"]) >= {"optimizer", "lr", "batch_size", "epochs", "early_stopping"}
    assert text.startswith("# Starter config for ")
    assert "# 3 classes (rows each): cat (40), dog (40), frog (40)" in text
    assert "# a table: 120 rows, 4 numeric features" in text
    assert "label_column: label" in text and "# named like a label column" in text


def test_tiny_table_gets_a_linear_full_batch_config_that_trains(tmp_path: Path) -> None:
    X, y = blobs(n_per_class=4)  # 12 rows: no validation, linear, full batch
    data = write(tmp_path / "train.csv", table_text(X, NAMES[y]))
    _, doc = init(data)
    assert doc["model"]["hidden"] == [] and doc["train"]["batch_size"] == "full"
    assert "val_split" not in doc["data"] and doc["train"]["early_stopping"] is None
    config = write(tmp_path / "c.yaml", yaml.safe_dump(doc))
    summary = train_json(config, tmp_path / "run")
    assert summary["final"]["train_acc"] == 1.0


@pytest.mark.parametrize(("header", "rows", "label"), [
    (["f1", "Target", "f2"], [["1", "0", "2"]], "Target"),
    (["x", "y", "label"], [["1", "2", "3"]], "label"),  # label comes before y
    (["SPECIES", "a"], [["setosa", "1"]], "SPECIES"),
    (["name", "a", "b"], [["red", "1", "2"], ["blue", "3", "4"]], "name"),  # the text column
    (["a", "b", "c"], [["1", "2", "3"]], "c"),  # else the last column
    (["name", "kind", "a"], [["red", "x", "1"]], "a"),  # two text columns: the last column
])
def test_label_column_guess(header: list[str], rows: list[list[str]], label: str) -> None:
    assert starter.guess_label_column(header, rows)[0] == label


def test_label_column_option_and_a_relative_path_as_typed(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    X, y = blobs(n_per_class=10)
    write(tmp_path / "data" / "t.csv", table_text(X, NAMES[y], label_column="kind",
                                                  label_pos=0))
    monkeypatch.chdir(tmp_path)
    text, doc = init("data/t.csv", "--label-column", "kind")
    assert doc["data"] == {**doc["data"], "train": "data/t.csv", "label_column": "kind"}
    assert "# as asked (--label-column)" in text
    config = write(tmp_path / "c.yaml", text)
    train_json(config, tmp_path / "run", "--set", "train.epochs=3")
    bad = cli("init", "data/t.csv", "--label-column", "nope")
    assert "no column 'nope' in the header (columns: kind, f0" in one_error(bad)


def test_a_sibling_test_table_is_used_when_it_fits(tmp_path: Path) -> None:
    X, y = blobs(n_per_class=10)
    train = write(tmp_path / "d" / "train.csv", table_text(X, NAMES[y]))
    test = write(tmp_path / "d" / "test.csv", table_text(X[:6], NAMES[y[:6]]))
    _, doc = init(train)
    assert doc["data"]["test"] == str(test)
    write(test, table_text(X[:2], ["cat", "unicorn"]))  # a class the model cannot know
    text, doc = init(train)
    assert "test" not in doc["data"]
    assert f"\n  # test: {test}\n" in text and "# not used as data.test:" in text
    assert "unicorn" in text


def test_paths_that_need_quoting_round_trip(tmp_path: Path) -> None:
    X, y = blobs(n_per_class=10)
    data = write(tmp_path / "we ird: #1 'x'" / "train.csv", table_text(X, NAMES[y]))
    _, doc = init(data)
    assert doc["data"]["train"] == str(data)


def test_a_label_with_a_value_per_row_is_flagged(tmp_path: Path) -> None:
    X, _ = blobs(n_per_class=10)
    data = write(tmp_path / "t.csv", table_text(X, [f"{v:.3f}" for v in X[:, 0] * 7]))
    result = cli("init", data)
    assert result.exit_code == 0
    assert "is it really a class label?" in result.stdout
    assert result.stderr.startswith("warning: ") and "30 distinct values" in result.stderr


# ---------------------------------------------------------------- image folders


def test_mixed_size_colour_photos_get_a_size_and_rgb(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    for k, name in enumerate(["blue", "red"]):
        for i in range(60):
            w, h = (int(v) for v in rng.integers(20, 90, size=2))
            pixels = rng.integers(0, 80, size=(h, w, 3))
            pixels[..., k] += 150
            png(folder / name / f"{i:03d}.png", pixels)
    text, doc = init(folder)
    width, height = doc["data"]["image"]["size"]
    assert doc["data"]["image"]["mode"] == "RGB" and max(width, height) == 32
    assert "sizes differ (" in text and "# 2 classes (images each): blue (60), red (60)" in text
    assert doc["model"]["hidden"] == [128]
    config = write(tmp_path / "c.yaml", text)
    summary = train_json(config, tmp_path / "run", "--set", "train.epochs=3")
    assert summary["epochs"] == 3


def test_one_small_size_is_kept_and_greyscale_is_l(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        for i in range(12):
            png(tmp_path / "imgs" / name / f"{i}.png", rng.integers(0, 256, size=(6, 8)))
    palette = np.repeat(np.arange(256, dtype=np.uint8), 3)  # a grey palette image
    im = Image.fromarray(rng.integers(0, 256, size=(6, 8)).astype(np.uint8), mode="P")
    im.putpalette(palette.tolist())
    im.save(tmp_path / "imgs" / "b" / "pal.png")
    text, doc = init(tmp_path / "imgs")
    assert doc["data"]["image"] == {"size": None, "mode": "L"}
    assert "every image is 8x6 (width x height): used as is" in text
    config = write(tmp_path / "c.yaml", text)
    assert train_json(config, tmp_path / "run", "--set", "train.epochs=3")["epochs"] == 3


def test_a_colour_palette_means_rgb_and_large_images_are_resized(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for name in ("a", "b"):
        for i in range(3):
            png(tmp_path / "imgs" / name / f"{i}.png", rng.integers(0, 256, size=(100, 80)))
    im = Image.fromarray(np.zeros((100, 80), dtype=np.uint8), mode="P")
    im.putpalette([255, 0, 0] * 256)
    im.save(tmp_path / "imgs" / "a" / "red.png")
    text, doc = init(tmp_path / "imgs")
    assert doc["data"]["image"] == {"size": [26, 32], "mode": "RGB"}
    assert "null keeps 80x100" in text


def test_label_column_is_for_tables(tmp_path: Path) -> None:
    png(tmp_path / "imgs" / "a" / "0.png", np.zeros((2, 2)))
    error = one_error(cli("init", tmp_path / "imgs", "--label-column", "x"))
    assert "--label-column is for tables" in error


# ---------------------------------------------------------------- output file


def test_output_file_is_never_overwritten_without_force(tmp_path: Path) -> None:
    X, y = blobs(n_per_class=10)
    data = write(tmp_path / "t.csv", table_text(X, NAMES[y]))
    config = write(tmp_path / "mine.yaml", "# my own config\n")
    before = (config.read_bytes(), config.stat().st_mtime_ns)
    error = one_error(cli("init", data, "-o", config))
    assert error == f"Error: {config}: already exists (use --force to overwrite it)"
    assert (config.read_bytes(), config.stat().st_mtime_ns) == before
    result = cli("init", data, "-o", config, "--force")
    assert result.exit_code == 0, result.stderr
    assert config_from_dict(yaml.safe_load(config.read_text(encoding="utf-8")))
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # no temp file left


def test_stdout_mode_and_dash_print_the_same_text(tmp_path: Path) -> None:
    X, y = blobs(n_per_class=10)
    data = write(tmp_path / "t.csv", table_text(X, NAMES[y]))
    plain, dash = cli("init", data), cli("init", data, "-o", "-")
    assert plain.exit_code == dash.exit_code == 0 and plain.stdout == dash.stdout
    assert plain.stderr == ""


def test_the_library_never_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    X, y = blobs(n_per_class=10)
    text = starter.starter_config(write(tmp_path / "t.csv", table_text(X, NAMES[y])))
    assert text.endswith("\n") and capsys.readouterr() == ("", "")


# ---------------------------------------------------------------- data it cannot train on


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: d / "missing.csv", "missing.csv: no such file or folder"),
    (lambda d: write(d / "x.txt", "hello"), "unknown data kind '.txt'"),
    (lambda d: (d / "bin.csv").write_bytes(b"\xff\xfe\x00garbage") and d / "bin.csv",
     "bin.csv: not a UTF-8 text table"),
    (lambda d: write(d / "one.csv", "a,label\n1,x\n2,x\n"), "found only one class ('x')"),
    (lambda d: write(d / "s.csv", "a,color,label\n1,red,x\n2,3,y\n"),  # text, then a number
     "feature column 'color' holds text"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "empty: empty folder"),
    (lambda d: png(d / "imgs" / "a" / "0.png", np.zeros((4, 4))) and
     write(d / "imgs" / "b" / "1.png", "not a png") and d / "imgs",
     "imgs/b/1.png: cannot decode image"),
])
def test_data_that_cannot_train_is_one_error_line_and_no_file(tmp_path: Path, make: Any,
                                                              message: str) -> None:
    data = make(tmp_path)
    error = one_error(cli("init", data, "-o", tmp_path / "out.yaml"))
    assert message in error, error
    assert not (tmp_path / "out.yaml").exists()


def test_starter_config_raises_nncli_error(tmp_path: Path) -> None:
    with pytest.raises(NncliError, match="no such file or folder"):
        starter.starter_config(tmp_path / "nothing")
