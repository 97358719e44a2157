"""First contact with ``predict`` and ``eval`` (SPEC, second revision): table columns matched
by name whenever a header is present, one clear error for data of the wrong kind, folders of
images, a notice on a terminal, TSV that stays one line per input, a stream that survives a
stray file with ``--keep-going``, and the macro / weighted averages of ``eval``."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers_data import ROOT, blobs, cli, config_doc, train_run, write_table
from PIL import Image

from nncli.config import config_from_dict
from nncli.data import load_training_data
from nncli.errors import NncliError
from nncli.metrics import average_report

CLASSES = np.array(["cat", "dog", "frog"])
ORDER = [3, 1, 0, 2]  # a column order other than the training one
WAIT = 60  # seconds a stream test waits for an answer before calling it hung


def rows_of(X: np.ndarray) -> list[str]:
    return [",".join(repr(float(v)) for v in row) for row in X]


def one_error_line(result) -> str:
    """The single ``Error:`` line of a failed command (exit 2, nothing on stdout)."""
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "internal error" not in lines[0] and "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray, Path]:
    """30 rows, 4 features f0..f3, classes cat/dog/frog; X, labels, path of the table."""
    X, y = blobs(n_per_class=10, seed=1)
    path = tmp_path_factory.mktemp("table") / "train.csv"
    return X, CLASSES[y], write_table(path, X, CLASSES[y])


@pytest.fixture(scope="module")
def table_model(tmp_path_factory: pytest.TempPathFactory, table) -> Path:
    doc = config_doc(table[2], train={"epochs": 30, "lr": 0.05})
    return train_run(tmp_path_factory.mktemp("tm") / "run", doc) / "checkpoints" / "last.npz"


@pytest.fixture(scope="module")
def numeric_labels_model(tmp_path_factory: pytest.TempPathFactory
                         ) -> tuple[np.ndarray, np.ndarray, Path]:
    """A model whose classes are numbers (0, 1, 2), so rows that carry the label column
    are all numbers; X, labels, checkpoint."""
    X, y = blobs(n_per_class=10, seed=1)
    root = tmp_path_factory.mktemp("numeric-labels")
    path = write_table(root / "train.csv", X, y)
    doc = config_doc(path, train={"epochs": 30, "lr": 0.05})
    return X, y, train_run(root / "run", doc) / "checkpoints" / "last.npz"


def write_images(folder: Path, n: int = 3, size: tuple[int, int] = (3, 4)) -> None:
    """An image folder: classes dark and light, ``n`` grayscale PNGs of ``size`` (w, h)."""
    rng = np.random.default_rng(0)
    for name, level in (("dark", 40), ("light", 210)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = np.clip(level + rng.normal(0, 20, size[::-1]), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.png")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images") / "imgs"
    write_images(folder)
    return folder


@pytest.fixture(scope="module")
def image_model(tmp_path_factory: pytest.TempPathFactory, images: Path) -> Path:
    doc = config_doc(images, train={"epochs": 20, "lr": 0.05})
    return train_run(tmp_path_factory.mktemp("im") / "run", doc) / "checkpoints" / "last.npz"


# ---------------------------------------------------------------- columns by name


def test_stdin_header_in_another_order_without_the_label_is_matched_by_name(
        table, table_model: Path) -> None:
    """Regression: these rows were read by position (wrong answers, exit 0)."""
    X, _, _ = table
    header = ",".join(f"f{j}" for j in ORDER)
    text = "\n".join([header, *rows_of(X[:, ORDER])]) + "\n"
    by_name = cli("predict", table_model, input=text)
    in_order = cli("predict", table_model, "--", *rows_of(X))
    by_position = cli("predict", table_model, "--", *rows_of(X[:, ORDER]))
    assert by_name.exit_code == 0, by_name.stderr
    assert by_position.stdout != in_order.stdout, "the permutation must change the answers"
    assert by_name.stdout == in_order.stdout and len(in_order.stdout.splitlines()) == 30


def test_stdin_header_in_another_order_with_numeric_labels_is_matched_by_name(
        numeric_labels_model) -> None:
    """Regression: with numeric class labels every cell is a number, and the fast reader
    dropped the label column but read the features by position."""
    X, y, ckpt = numeric_labels_model
    header = "label," + ",".join(f"f{j}" for j in ORDER)
    rows = [f"{label}," + row for label, row in zip(y, rows_of(X[:, ORDER]))]
    by_name = cli("predict", ckpt, input="\n".join([header, *rows]) + "\n")
    in_order = cli("predict", ckpt, "--", *rows_of(X))
    assert by_name.exit_code == 0, by_name.stderr
    assert cli("predict", ckpt, "--", *rows_of(X[:, ORDER])).stdout != in_order.stdout
    assert by_name.stdout == in_order.stdout


def test_stdin_header_naming_an_unknown_column_is_one_error(table, table_model: Path) -> None:
    """Regression: was 'input row 1: not a number: ...', naming neither column list."""
    X, _, _ = table
    text = "\n".join(["f3,f1,f0,zz", *rows_of(X[:3])]) + "\n"
    line = one_error_line(cli("predict", table_model, input=text))
    assert "zz" in line and "f2" in line and "f0, f1, f2, f3" in line and "stdin" in line


def test_stdin_header_lacking_a_feature_column_is_one_error(table, table_model: Path) -> None:
    """Regression: was 'not a number: ...' (the header was taken for a data row)."""
    X, labels, _ = table
    rows = [f"{lab},{r}" for lab, r in zip(labels[:3], rows_of(X[:3, [3, 1, 0]]))]
    line = one_error_line(cli("predict", table_model, input="\n".join(["label,f3,f1,f0", *rows])))
    assert "lacks the feature column(s) f2" in line and "f0, f1, f2, f3" in line


def test_table_file_naming_an_unknown_column_is_an_error(tmp_path: Path, table,
                                                         table_model: Path) -> None:
    """Regression: a file whose header renames a column was read by position."""
    X, labels, _ = table
    path = write_table(tmp_path / "renamed.csv", X, labels, header=["f0", "f1", "f2", "zz"])
    line = one_error_line(cli("predict", table_model, path))
    assert "renamed.csv" in line and "zz" in line and "f3" in line


def test_eval_table_renaming_a_column_is_an_error(tmp_path: Path, table,
                                                  table_model: Path) -> None:
    """Regression: align_features fell back to position when the names differed."""
    X, labels, _ = table
    path = write_table(tmp_path / "renamed.csv", X, labels, header=["f0", "f1", "zz", "f3"])
    line = one_error_line(cli("eval", table_model, path))
    assert "renamed.csv" in line and "zz" in line and "lacks the feature column(s) f2" in line


def test_eval_table_lacking_a_column_names_it(tmp_path: Path, table, table_model: Path) -> None:
    X, labels, _ = table
    path = write_table(tmp_path / "narrow.csv", X[:, [0, 1, 3]], labels,
                       header=["f0", "f1", "f3"])
    line = one_error_line(cli("eval", table_model, path))
    assert "narrow.csv: eval examples have 3 features" in line and "f2" in line


def test_validation_table_renaming_a_column_is_an_error(tmp_path: Path, table) -> None:
    """Regression: the same rule holds for data.val / data.test during training."""
    X, labels, path = table
    val = write_table(tmp_path / "val.csv", X[:6], labels[:6], header=["f0", "f1", "f2", "g3"])
    cfg = config_from_dict(config_doc(path, data={"val": str(val)}))
    with pytest.raises(NncliError, match=r"val\.csv: .*f3.*g3"):
        load_training_data(cfg)


def test_numeric_column_names(tmp_path: Path, table) -> None:
    """A header of numeric names counts on stdin (then by name, in any order) when its
    cells are exactly the training column names, with or without the label column."""
    X, labels, _ = table
    path = write_table(tmp_path / "num.csv", X, labels, header=["0", "1", "2", "3"])
    ckpt = train_run(tmp_path / "run", config_doc(path, train={"epochs": 30, "lr": 0.05})
                     ) / "checkpoints" / "last.npz"
    in_order = cli("predict", ckpt, "--", *rows_of(X))
    header = "label," + ",".join(str(j) for j in ORDER)
    rows = [f"{lab},{r}" for lab, r in zip(labels, rows_of(X[:, ORDER]))]
    by_name = cli("predict", ckpt, input="\n".join([header, *rows]) + "\n")
    assert by_name.exit_code == 0, by_name.stderr
    assert cli("predict", ckpt, "--", *rows_of(X[:, ORDER])).stdout != in_order.stdout
    assert by_name.stdout == in_order.stdout
    numbers_first = cli("predict", ckpt, input="\n".join(["0,1,2,3", *rows_of(X[:6])]) + "\n")
    assert numbers_first.exit_code == 0, numbers_first.stderr
    assert len(numbers_first.stdout.splitlines()) == 6  # "0,1,2,3" is the header
    assert numbers_first.stdout == cli("predict", ckpt, "--", *rows_of(X[:6])).stdout
    near_miss = cli("predict", ckpt, input="\n".join(["0,1,2,4", *rows_of(X[:6])]) + "\n")
    assert len(near_miss.stdout.splitlines()) == 7  # not the names: "0,1,2,4" is row 1


def test_header_with_the_label_column_in_every_format(table, table_model: Path) -> None:
    """The label column in the header (and rows), another column order: tsv, csv, jsonl
    and --top-k answer as for the plain rows."""
    X, labels, _ = table
    header = "f2,label,f0,f3,f1"
    order = [2, 0, 3, 1]
    rows = [",".join([repr(float(x[order[0]])), lab, *(repr(float(x[j])) for j in order[1:])])
            for x, lab in zip(X[:5], labels)]
    text = "\n".join([header, *rows]) + "\n"
    for extra in [(), ("--format", "csv", "--top-k", "2"), ("--format", "jsonl", "--top-k", "3")]:
        got = cli("predict", table_model, *extra, input=text)
        want = cli("predict", table_model, *extra, "--", *rows_of(X[:5]))
        assert got.exit_code == 0, got.stderr
        assert len(want.stdout.splitlines()) == 5
        if "jsonl" not in extra:
            assert got.stdout == want.stdout
        if "jsonl" in extra:  # full float32 precision: one row at a time vs a batch of 5
            objs = [json.loads(line) for line in got.stdout.splitlines()]
            wants = [json.loads(line) for line in want.stdout.splitlines()]
            assert [o["input"] for o in objs] == [w["input"] for w in wants]
            assert [[t["label"] for t in o["top"]] for o in objs] == [
                [t["label"] for t in w["top"]] for w in wants]
            assert np.allclose([[t["probability"] for t in o["top"]] for o in objs],
                               [[t["probability"] for t in w["top"]] for w in wants], rtol=1e-5)
            assert all(len(o["top"]) == 3 for o in objs)
        elif "csv" in extra:
            assert all(len(row) == 5 for row in csv.reader(io.StringIO(got.stdout)))


# ---------------------------------------------------------------- the wrong kind of data


def test_eval_table_model_on_an_image_folder_says_what_it_expects(
        table_model: Path, images: Path) -> None:
    """Regression: was 'internal error: ValueError: not enough values to unpack'."""
    line = one_error_line(cli("eval", table_model, images))
    assert "trained on table rows with 4 features (f0, f1, f2, f3)" in line
    assert str(images) in line and "image folder" in line


def test_predict_table_model_on_an_image_path_says_what_it_expects(
        table_model: Path, images: Path) -> None:
    """Regression: was 'expected 4 feature values, got 1'."""
    image = images / "dark" / "0.png"
    line = one_error_line(cli("predict", table_model, image))
    assert "trained on table rows with 4 features" in line and f"{image} is an image" in line
    line = one_error_line(cli("predict", table_model, input=f"{image}\n"))
    assert f"{image} is an image" in line
    line = one_error_line(cli("predict", table_model, images))
    assert f"{images} is a folder" in line


def test_image_model_on_table_data_says_what_it_expects(tmp_path: Path, table,
                                                        image_model: Path) -> None:
    """Regression: a .csv was 'cannot decode image', a row on stdin 'no such file', eval on
    a table counted features."""
    _, _, path = table
    expects = "trained on images (3x4 pixels, mode L)"
    line = one_error_line(cli("predict", image_model, path))
    assert expects in line and f"{path} is a table" in line
    line = one_error_line(cli("predict", image_model, input="1.5,2,3\n"))
    assert expects in line and "table row" in line
    line = one_error_line(cli("eval", image_model, path))
    assert expects in line and f"{path} is a table" in line
    other = tmp_path / "other.npz"
    np.savez(other, X=np.zeros((4, 5)), y=np.array([0, 1, 0, 1]))
    line = one_error_line(cli("eval", image_model, other))
    assert expects in line and "(5,)" in line


def test_image_of_another_size_names_both(tmp_path: Path, image_model: Path) -> None:
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((4, 5), dtype=np.uint8)).save(big)  # 5 wide, 4 high
    line = one_error_line(cli("predict", image_model, big))
    assert "image is 5x4" in line and "3x4 pixels" in line


# ---------------------------------------------------------------- folders, terminals, TSV


def test_predict_a_folder_means_its_images(tmp_path: Path, image_model: Path) -> None:
    """Regression: a folder was 'cannot decode image (IsADirectoryError ...)'. Recursive,
    sorted by path, hidden files skipped, non-image files skipped with one warning."""
    pics = tmp_path / "pics"
    (pics / "a" / "y").mkdir(parents=True)
    (pics / ".hid").mkdir()
    pixels = np.full((4, 3), 90, dtype=np.uint8)
    for rel in ["b.png", "a/z.png", "a/y/x.png", ".hidden.png", ".hid/q.png"]:
        Image.fromarray(pixels).save(pics / rel)
    (pics / "notes.txt").write_text("not an image")
    (pics / "a" / "README").write_text("nor this")
    result = cli("predict", image_model, pics)
    assert result.exit_code == 0, result.stderr
    inputs = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert inputs == [str(pics / "a" / "y" / "x.png"), str(pics / "a" / "z.png"),
                      str(pics / "b.png")]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "skipped 2 file(s)" in warnings[0]


def unescape_tsv(cell: str) -> str:
    escapes = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m[1], m[0]), cell)


def test_tsv_escapes_tabs_newlines_and_backslashes(tmp_path: Path, image_model: Path) -> None:
    """Regression: tabs and newlines in a path became spaces (not reversible)."""
    folder = tmp_path / "odd"
    folder.mkdir()
    names = ["tab\there.png", "new\nline.png", "back\\slash.png", "plain.png"]
    for name in names:
        Image.fromarray(np.full((4, 3), 200, dtype=np.uint8)).save(folder / name)
    paths = [str(folder / name) for name in names]
    result = cli("predict", image_model, *paths)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and all(len(line.split("\t")) == 3 for line in lines)
    assert [unescape_tsv(line.split("\t")[0]) for line in lines] == paths
    assert cli("predict", image_model, folder).stdout == "".join(
        sorted(result.stdout.splitlines(keepends=True), key=lambda line: line.split("\t")[0]))
    assert f"{folder}/tab\\there.png\t" in result.stdout
    assert f"{folder}/back\\\\slash.png\t" in result.stdout
    # A name that is not valid UTF-8 (Python holds its bytes as surrogate escapes): \xNN.
    os.rename(folder / "plain.png", os.fsdecode(os.fsencode(folder) + b"/caf\xe9.png"))
    result = cli("predict", image_model, folder)
    assert result.exit_code == 0, result.stderr
    assert f"{folder}/caf\\xe9.png\t" in result.stdout


def read_line(stream, what: str) -> str:
    ready, _, _ = select.select([stream], [], [], WAIT)
    assert ready, f"no {what} within {WAIT}s"
    return stream.readline()


def read_stderr_line(stream, start: str) -> str:
    """The next stderr line that starts with ``start`` (skipping any warning: lines)."""
    for _ in range(10):
        line = read_line(stream, f"'{start}' line")
        if line.startswith(start) or not line.startswith("warning:"):
            return line
    raise AssertionError(f"no '{start}' line on stderr")


def test_predict_tells_a_terminal_what_it_reads(table, table_model: Path) -> None:
    """Regression: on a terminal predict waited without a word."""
    X, _, _ = table
    master, slave = pty.openpty()
    with subprocess.Popen([sys.executable, "-m", "nncli.cli", "predict", str(table_model)],
                          stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, cwd=ROOT) as proc:
        os.close(slave)
        try:
            notice = read_stderr_line(proc.stderr, "reading")
            assert "reading table rows" in notice and "Ctrl-D" in notice
            assert "f0, f1, f2, f3" in notice
            os.write(master, (rows_of(X[:1])[0] + "\n").encode())
            assert read_line(proc.stdout, "answer").startswith("1\t")
            os.write(master, b"\x04")  # Ctrl-D at the start of a line: end of input
            assert proc.wait(timeout=WAIT) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            os.close(master)


def test_piped_stdin_gets_no_notice(table, table_model: Path) -> None:
    result = cli("predict", table_model, input="\n".join(rows_of(table[0][:2])) + "\n")
    assert result.exit_code == 0 and result.stderr == ""


# ---------------------------------------------------------------- a stream that goes on


def test_keep_going_stream_survives_a_stray_file(tmp_path: Path, images: Path,
                                                 image_model: Path) -> None:
    """The README pipeline (inotifywait ... | nncli predict --keep-going CKPT): a text file
    in the stream gets one Error line, and both good images are answered while stdin is
    still open."""
    stray = tmp_path / "notes.txt"
    stray.write_text("not an image\n")
    good = [images / "dark" / "0.png", images / "light" / "1.png"]
    with subprocess.Popen([sys.executable, "-m", "nncli.cli", "predict", "--keep-going",
                           str(image_model)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=ROOT) as proc:
        try:
            proc.stdin.write(f"{good[0]}\n")
            proc.stdin.flush()
            assert read_line(proc.stdout, "answer").startswith(f"{good[0]}\tdark\t")
            proc.stdin.write(f"{stray}\n")
            proc.stdin.flush()
            error = read_stderr_line(proc.stderr, "Error: ")
            assert error.startswith("Error: ") and str(stray) in error
            proc.stdin.write(f"{good[1]}\n")
            proc.stdin.flush()
            assert read_line(proc.stdout, "answer").startswith(f"{good[1]}\tlight\t")
            proc.stdin.close()
            assert proc.wait(timeout=WAIT) == 2  # a failure happened: exit 2 at the end
            assert proc.stdout.read() == "" and "Traceback" not in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()


# ---------------------------------------------------------------- eval averages


def sklearn_averages(y_true: list[int], y_pred: list[int]) -> dict[str, dict[str, float]]:
    """classification_report's macro and weighted averages, the textbook way: per label of
    unique_labels(y_true, y_pred), counts by pairs; zero denominators give 0."""
    labels = sorted(set(y_true) | set(y_pred))
    per = {}
    for k in labels:
        tp = sum(t == k and p == k for t, p in zip(y_true, y_pred))
        predicted = sum(p == k for p in y_pred)
        support = sum(t == k for t in y_true)
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per[k] = (precision, recall, f1, support)
    n = len(y_true)
    out = {}
    for name, weight in (("macro_avg", lambda s: 1 / len(labels)),
                         ("weighted_avg", lambda s: s / n)):
        out[name] = {m: sum(weight(v[3]) * v[i] for v in per.values())
                     for i, m in enumerate(("precision", "recall", "f1"))}
    return out


def test_average_report_matches_sklearn_formulas_with_absent_and_unpredicted_classes() -> None:
    # Class 2 is never predicted (precision 0/0), class 3 occurs nowhere (left out of the
    # macro average, as scikit-learn's default labels do).
    y_true = [0, 0, 0, 1, 1, 2, 2, 2, 2, 0]
    y_pred = [0, 1, 0, 1, 0, 1, 1, 0, 1, 0]
    confusion = np.zeros((4, 4), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    got = average_report(confusion)
    want = sklearn_averages(y_true, y_pred)
    for name in ("macro_avg", "weighted_avg"):
        assert got[name]["support"] == 10
        for metric in ("precision", "recall", "f1"):
            assert got[name][metric] == pytest.approx(want[name][metric], abs=1e-12)


def test_eval_reports_macro_and_weighted_averages(tmp_path: Path, table) -> None:
    """Regression: eval had no macro_avg / weighted_avg."""
    X, labels, path = table
    ckpt = train_run(tmp_path / "run", config_doc(path, train={"epochs": 1, "lr": 0.01})
                     ) / "checkpoints" / "last.npz"  # undertrained: it makes mistakes
    pick = np.r_[0:10, 10:12, 20:28]  # unbalanced, so macro and weighted differ
    data = write_table(tmp_path / "eval.csv", X[pick], labels[pick])
    result = cli("eval", ckpt, data, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    classes = report["classes"]
    y_true = [classes.index(v) for v in labels[pick]]
    predicted = cli("predict", ckpt, "--", *rows_of(X[pick])).stdout.splitlines()
    y_pred = [classes.index(line.split("\t")[1]) for line in predicted]
    assert y_true != y_pred, "the model should make some mistakes"
    want = sklearn_averages(y_true, y_pred)
    for name in ("macro_avg", "weighted_avg"):
        assert set(report[name]) >= {"precision", "recall", "f1"}
        for metric in ("precision", "recall", "f1"):
            assert report[name][metric] == pytest.approx(want[name][metric], abs=1e-12)
    text = cli("eval", ckpt, data).stdout
    macro = next(line for line in text.splitlines() if line.startswith("macro avg"))
    assert macro.split()[2:5] == [f"{want['macro_avg'][m]:.4f}"
                                  for m in ("precision", "recall", "f1")]
    assert "weighted avg" in text

