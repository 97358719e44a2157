"""Output integrity (issue 10): every output format keeps one record per input whatever
bytes a file or class name holds, ``Error:``/``warning:`` lines stay one inert line,
integer labels compare exactly, and the smaller internal errors — hostile ``.npz``
headers, ``gradcheck --tol nan``, a CSV field over the csv module's limit, duplicate YAML
keys, overflow in normalization, eval and predict, inputs that begin with ``-``, eval of
30,000 classes — are each one clear ``Error:`` line (or a sensible output)."""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers_data import blobs, cli, config_doc, train_run, write_table, write_yaml
from PIL import Image

from nncli.config import load_config
from nncli.data import read_source, sort_classes
from nncli.errors import NncliError

# Names that would forge a record, break a line or steer a terminal if printed raw.
HOSTILE_NAMES = ["a.png\nFAKE.png,cat,1.0", "b\r.png", 'c,"d".png', "\x1b[2Jx.png",
                 "e\x1b]0;title\x07.png", "f\x0bg\x1ch\x85i\u2028j.png", "back\\slash.png"]


def run(*args: Any, input: str | None = None, cwd: Path | None = None,
        limit_memory: int | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``nncli ARGS`` as a real process (real pipes: click strips nothing it would not
    strip for a user's pipe), optionally under an address-space limit of ``limit_memory``
    bytes."""
    env = {k: v for k, v in os.environ.items() if k not in ("NNCLI_DEBUG", "PYTHONWARNINGS")}
    env["OPENBLAS_NUM_THREADS"] = "1"

    def limit() -> None:
        if limit_memory:
            resource.setrlimit(resource.RLIMIT_AS, (limit_memory, limit_memory))

    done = subprocess.run([sys.executable, "-m", "nncli.cli", *map(str, args)],
                          input=None if input is None else input.encode(), capture_output=True,
                          cwd=cwd, timeout=timeout, env=env, preexec_fn=limit)
    # Bytes decoded by hand: text mode would turn a \r into \n (universal newlines).
    done.stdout = done.stdout.decode("utf-8", "surrogateescape")
    done.stderr = done.stderr.decode("utf-8", "surrogateescape")
    return done


def error_line(result: Any) -> str:
    """The one ``Error:`` line of a command that failed with exit 2."""
    code = result.returncode if hasattr(result, "returncode") else result.exit_code
    assert code == 2, (code, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "internal error" not in lines[0] and "Traceback" not in result.stderr
    return lines[0]


def png(path: Path, value: int) -> Path:
    Image.fromarray(np.full((4, 4), value, dtype=np.uint8)).save(path, format="PNG")
    return path


@pytest.fixture(scope="module")
def image_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint trained on 4x4 grayscale images of classes dark/light."""
    root = tmp_path_factory.mktemp("images")
    for name, values in (("dark", (0, 10, 20, 30)), ("light", (220, 230, 240, 250))):
        (root / "data" / name).mkdir(parents=True)
        for v in values:
            png(root / "data" / name / f"{v}.png", v)
    doc = config_doc(root / "data", train={"epochs": 3})
    return train_run(root / "run", doc) / "checkpoints" / "last.npz"


@pytest.fixture(scope="module")
def hostile_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of real image files whose names hold line breaks, quotes, commas, escape
    sequences and other control characters."""
    folder = tmp_path_factory.mktemp("hostile")
    for i, name in enumerate(HOSTILE_NAMES):
        png(folder / name, 40 * i)
    return folder


# ---------------------------------------------------------------- one record per input


def test_predict_csv_keeps_one_record_per_input_whatever_its_name(image_model: Path,
                                                                  hostile_images: Path
                                                                  ) -> None:
    result = run("predict", image_model, "--format", "csv", *HOSTILE_NAMES, cwd=hostile_images)
    assert result.returncode == 0, result.stderr
    records = list(csv.reader(io.StringIO(result.stdout, newline="")))
    assert [r[0] for r in records] == HOSTILE_NAMES  # exact names: nothing stripped
    assert all(len(r) == 3 and r[1] in ("dark", "light") for r in records)


def test_predict_tsv_and_jsonl_keep_one_line_per_input(image_model: Path,
                                                       hostile_images: Path) -> None:
    for fmt in ("tsv", "jsonl"):
        result = run("predict", image_model, "--format", fmt, *HOSTILE_NAMES,
                     cwd=hostile_images)
        assert result.returncode == 0, result.stderr
        # str.splitlines also splits on \x0b, \x1c, \x85, \u2028: none may be raw.
        lines = result.stdout.splitlines()
        assert len(lines) == len(HOSTILE_NAMES), lines
        assert not any(ord(c) < 32 and c != "\t" or 0x7F <= ord(c) < 0xA0
                       for c in result.stdout.replace("\n", ""))
        if fmt == "jsonl":
            assert [json.loads(line)["input"] for line in lines] == HOSTILE_NAMES
        else:
            assert [line.split("\t")[0] for line in lines][:3] == [
                "a.png\\nFAKE.png,cat,1.0", "b\\r.png", 'c,"d".png']
            assert lines[-1].startswith("back\\\\slash.png\t")


def test_tsv_escapes_every_control_character() -> None:
    from nncli.inference import Prediction, format_prediction

    name = "".join(map(chr, [*range(32), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]))
    line = format_prediction(Prediction(name, [("x\ny", 0.5)]), "tsv", 1)
    assert line.count("\t") == 2 and len(line.splitlines()) == 1
    cells = line.split("\t")
    assert all(32 <= ord(c) < 0x7F for c in cells[0]), cells[0]
    assert cells[0].startswith("\\x00\\x01") and "\\t\\n\\x0b\\x0c\\r" in cells[0]
    assert "\\x1b" in cells[0] and "\\u0085" in cells[0] and "\\u2028" in cells[0]
    assert cells[1] == "x\\ny"


def test_class_names_with_line_breaks_stay_in_their_field(tmp_path: Path) -> None:
    """Labels can hold any string (here from an .npz): they are output too."""
    X, y = blobs(n_per_class=6, n_features=2, n_classes=2, seed=3)
    names = np.array(["two\nlines", 'comma,"quo\rte"'])
    np.savez(tmp_path / "train.npz", X=X, y=names[y])
    ckpt = train_run(tmp_path / "run", config_doc(tmp_path / "train.npz",
                                                  train={"epochs": 2})) / "checkpoints/last.npz"
    rows = [",".join(repr(float(v)) for v in row) for row in X[:3]]
    result = run("predict", ckpt, "--format", "csv", "--top-k", "2", *rows)
    assert result.returncode == 0, result.stderr
    records = list(csv.reader(io.StringIO(result.stdout, newline="")))
    assert len(records) == 3 and all(sorted([r[1], r[3]]) == sorted(names) for r in records)
    tsv = run("predict", ckpt, "--top-k", "2", *rows)
    assert len(tsv.stdout.splitlines()) == 3
    table = run("eval", ckpt, tmp_path / "train.npz")
    assert table.returncode == 0, table.stderr
    class_rows = [line for line in table.stdout.splitlines() if line.startswith(("two", "comma"))]
    assert [row.split("  ")[0] for row in class_rows][:2] == ['comma,"quo\\rte"', "two\\nlines"]


# ---------------------------------------------------------------- Error and warning lines


def test_printable_escapes_controls_and_terminal_sequences() -> None:
    from nncli.cli import _one_line

    assert _one_line(" a\nb\r\tc\x1b[2J\x9b\u2028\u202e\udcff ") == \
        "a\\nb\\r\\tc\\x1b[2J\\u009b\\u2028\\u202e\\xff"


def test_error_line_shows_a_hostile_name_escaped(image_model: Path, tmp_path: Path) -> None:
    name = "nope\n\x1b]0;pwned\x07\x1b[2J.png"
    result = run("predict", image_model, name, cwd=tmp_path)
    line = error_line(result)
    assert "nope\\n\\x1b]0;pwned\\x07\\x1b[2J.png: no such file" in line
    assert not any(ord(c) < 32 for c in result.stderr[:-1])


def test_warning_line_shows_a_hostile_name_escaped(image_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    png(folder / "ok.png", 0)
    (folder / "note\n\x1b[2J.txt").write_text("not an image")
    result = run("predict", image_model, folder)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: "), result.stderr
    assert "note\\n\\x1b[2J.txt" in lines[0]
    assert len(result.stdout.splitlines()) == 1


# ---------------------------------------------------------------- inputs beginning with '-'


def test_predict_arguments_beginning_with_dash_are_inputs(image_model: Path, table_model: Path,
                                                          tmp_path: Path) -> None:
    png(tmp_path / "-h.png", 10)
    png(tmp_path / "--weird.png", 10)
    result = run("predict", image_model, "-h.png", cwd=tmp_path)  # not --help
    assert result.returncode == 0 and result.stdout.startswith("-h.png\t"), result
    result = run("predict", image_model, "--format=csv", "--", "--weird.png", "-h.png",
                 cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.splitlines()[0].startswith("--weird.png,")
    result = run("predict", image_model, "-", input="-h.png\n", cwd=tmp_path)
    assert result.stdout.startswith("-h.png\t"), result
    rows = run("predict", table_model, "-1.5,2,3", "-.5,-1,-2", "--top-k", "1")
    assert rows.returncode == 0 and len(rows.stdout.splitlines()) == 2, rows.stderr
    typo = error_line(run("predict", image_model, "--formt", "csv", "x.png", cwd=tmp_path))
    assert "No such option: --formt" in typo and "--format" in typo and " -- " in typo


@pytest.fixture(scope="module")
def table_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("table")
    X, y = blobs(n_per_class=8, n_features=3, n_classes=2, seed=5)
    path = write_table(root / "t.csv", X, np.array(["no", "yes"])[y])
    return train_run(root / "run", config_doc(path, train={"epochs": 2})) / \
        "checkpoints/last.npz"


# ---------------------------------------------------------------- labels


BIG = ["12345678901234567890", "12345678901234567891", "7"]


def test_integer_labels_compare_exactly(tmp_path: Path) -> None:
    X = np.array([[0.5], [3.0], [-1.0], [2.5], [7.0], [1.0]])
    labels = [BIG[i % 3] for i in range(6)]
    path = tmp_path / "t.csv"
    path.write_text("f0,label\n" + "".join(f"{float(x[0])!r},{lab}\n" for x, lab in zip(X, labels)))
    raw = read_source(path, load_config_for(tmp_path, path).data)
    assert sort_classes(raw.labels.tolist()) == ["7", *BIG[:2]]
    for dtype in (np.int64, np.uint64):
        y = np.array([2 ** 62 + 1, 2 ** 62, 7] * 2, dtype=dtype)
        np.savez(tmp_path / "y.npz", X=X, y=y)
        raw = read_source(tmp_path / "y.npz", load_config_for(tmp_path, path).data)
        assert sort_classes(raw.labels.tolist()) == ["7", str(2 ** 62), str(2 ** 62 + 1)]
    np.savez(tmp_path / "u.npz", X=X[:3], y=np.array([int(b) for b in BIG], dtype=np.uint64))
    raw = read_source(tmp_path / "u.npz", load_config_for(tmp_path, path).data)
    assert sort_classes(raw.labels.tolist()) == ["7", *BIG[:2]]


def test_numeric_class_order_is_exact_for_mixed_ints_and_decimals() -> None:
    names = ["12345678901234567891", "12345678901234567890.5", "12345678901234567890",
             "-1e400", "1e400", "2.5", "10"]
    assert sort_classes(names) == ["-1e400", "2.5", "10", "12345678901234567890",
                                   "12345678901234567890.5", "12345678901234567891", "1e400"]
    from nncli.data import canonical_label

    assert [canonical_label(v) for v in ("3.0", "+3", "3e0", " 3 ", 3.0)] == ["3"] * 5
    assert canonical_label("1.0000000000000000001") == "1.0000000000000000001"
    assert canonical_label("1_000") == "1_000" and canonical_label("nan") == "nan"


def load_config_for(root: Path, data: Path) -> Any:
    return load_config(write_yaml(root / "c.yaml", config_doc(data)), [])


# ---------------------------------------------------------------- hostile .npz


def npy_header(shape: tuple[int, ...], descr: str = "<f8", pad: int = 0) -> bytes:
    """A version-2 ``.npy`` header declaring ``shape`` (padded with ``pad`` extra bytes)."""
    text = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin1")
    if pad:
        text = text[:-1] + b", 'pad': '" + b"x" * pad + b"'}"
    text += b" " * ((64 - (12 + len(text) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x02\x00" + struct.pack("<I", len(text)) + text


def npz_of(path: Path, members: dict[str, bytes], deflate: bool = False) -> Path:
    y = io.BytesIO()
    np.save(y, np.array([0, 1]))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
                         ) as archive:
        for name, data in {"y.npy": y.getvalue(), **members}.items():
            archive.writestr(name, data)
    return path


def npz_error(tmp_path: Path, path: Path) -> str:
    cfg = load_config_for(tmp_path, path)
    with pytest.raises(NncliError) as info:
        read_source(path, cfg.data)
    return str(info.value)


def test_npz_declaring_terabytes_or_an_overflowing_shape_is_refused_before_loading(
        tmp_path: Path) -> None:
    huge = npz_of(tmp_path / "huge.npz", {"X.npy": npy_header((2 ** 20, 2 ** 20))})
    message = npz_error(tmp_path, huge)
    assert "huge.npz" in message and "X.npy" in message and "(1048576, 1048576)" in message
    over = npz_of(tmp_path / "over.npz", {"X.npy": npy_header((2 ** 62, 2 ** 62))})
    message = npz_error(tmp_path, over)
    assert "over.npz" in message and "more than any array can hold" in message


def test_npz_with_a_large_header_is_not_called_pickled(tmp_path: Path) -> None:
    data = npy_header((2, 2), pad=20_000) + bytes(32)
    message = npz_error(tmp_path, npz_of(tmp_path / "hdr.npz", {"X.npy": data}))
    assert "pickle" not in message and "header is" in message and "10,000" in message


def test_zip_bomb_npz_is_refused_against_available_memory(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    n = 8 << 20  # 64 MB of zeros, which deflate to ~64 kB
    bomb = npz_of(tmp_path / "bomb.npz", {"X.npy": npy_header((2, n // 2)) + bytes(8 * n)},
                  deflate=True)
    assert bomb.stat().st_size < 1 << 20
    import nncli.memory

    monkeypatch.setattr(nncli.memory, "available_memory_bytes", lambda: 16 << 20, raising=False)
    message = npz_error(tmp_path, bomb)
    assert "bomb.npz" in message and "67.1 MB" in message and "available" in message


def test_damaged_npz_members_are_one_error(tmp_path: Path) -> None:
    np.savez(tmp_path / "crc.npz", X=np.arange(6.0).reshape(3, 2), y=np.array([0, 1, 0]))
    data = bytearray((tmp_path / "crc.npz").read_bytes())
    data[data.find(b"\x93NUMPY") + 128 + 5] ^= 0xFF  # a byte of X's data: bad CRC
    (tmp_path / "crc.npz").write_bytes(bytes(data))
    assert "crc.npz" in npz_error(tmp_path, tmp_path / "crc.npz")
    raw = npz_of(tmp_path / "raw.npz", {"X": b"not an array"})
    assert "not a .npy array" in npz_error(tmp_path, raw)
    short = npz_of(tmp_path / "short.npz", {"X.npy": npy_header((2, 4)) + bytes(8)})
    assert "truncated" in npz_error(tmp_path, short)


# ---------------------------------------------------------------- options and input limits


def test_gradcheck_refuses_a_tolerance_that_is_not_finite(tmp_path: Path) -> None:
    X, y = blobs(n_per_class=4, n_features=2, n_classes=2, seed=2)
    config = write_yaml(tmp_path / "g.yaml", config_doc(write_table(tmp_path / "g.csv", X, y)))
    for tol in ("nan", "inf", "-1"):
        result = cli("gradcheck", config, "--tol", tol, "--samples", "2")
        assert result.exit_code == 2 and "--tol" in result.stderr, (tol, result.stderr)
    from nncli.nn.gradcheck import check_gradients
    from nncli.nn.model import MLP

    model = MLP.create(2, [], 2, "relu", "auto", np.random.default_rng(0), dtype="float64")
    with pytest.raises(NncliError, match="tolerance"):
        check_gradients(model, np.zeros((2, 2)), np.array([0, 1]), tol=float("nan"))


def test_predict_row_with_a_field_over_the_csv_limit_is_one_error(table_model: Path,
                                                                  tmp_path: Path) -> None:
    long_row = "1,2," + "3" * 140_000
    line = error_line(run("predict", table_model, "-", input=long_row + "\n"))
    assert "line 1" in line and "131,072" in line
    table = tmp_path / "rows.csv"
    table.write_text(f"f0,f1,f2\n1,2,3\n{long_row}\n")
    result = run("predict", table_model, table, "--keep-going")
    assert result.returncode == 2 and len(result.stdout.splitlines()) == 1
    assert f"{table}: line 3" in result.stderr and "131,072" in result.stderr


def test_duplicate_yaml_keys_are_an_error_naming_the_key_and_both_lines(tmp_path: Path
                                                                        ) -> None:
    cfg = tmp_path / "dup.yaml"
    cfg.write_text("data: {train: t.csv}\ntrain:\n  epochs: 2\n  lr: 0.1\n  epochs: 3\n")
    result = cli("info", cfg)
    assert result.exit_code == 2
    assert "dup.yaml: duplicate key 'train.epochs' at line 5 (first at line 3)" in result.stderr
    merged = tmp_path / "merge.yaml"  # YAML's merge key may be overridden: not a duplicate
    merged.write_text("data: {train: t.csv}\ntrain:\n  <<: {epochs: 2, lr: 0.1}\n  epochs: 3\n")
    assert load_config(merged, []).train.epochs == 3
    with pytest.raises(NncliError, match="duplicate key 'step.every'"):
        load_config(merged, ["train.lr_schedule={step: {every: 1, every: 2}}"])


# ---------------------------------------------------------------- overflow


@pytest.fixture(scope="module")
def float64_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("f64")
    X, y = blobs(n_per_class=8, n_features=2, n_classes=2, seed=7)
    # Spread ~0.003: 1e308 normalized is ~3e310, beyond float64.
    path = write_table(root / "t.csv", X * 1e-3, np.array(["a", "b"])[y])
    doc = config_doc(path, train={"epochs": 2, "dtype": "float64"})
    return train_run(root / "run", doc) / "checkpoints/last.npz"


def test_float64_overflow_is_not_told_to_use_float64(float64_model: Path,
                                                    tmp_path: Path) -> None:
    data = tmp_path / "big.csv"
    data.write_text("f0,f1,label\n1e308,1,a\n-1e308,2,b\n")
    result = run("eval", float64_model, data)
    line = error_line(result)
    assert "big.csv: line 2" in line and "float64" in line
    assert "train.dtype: float64" not in line and "rescale" in line


def test_no_raw_runtime_warning_from_eval_or_predict(tmp_path: Path) -> None:
    """A model whose scores overflow for huge (finite) inputs: eval and predict say so in
    one Error line naming the row; NumPy's RuntimeWarning never shows."""
    ckpt = hand_made_checkpoint(tmp_path, np.ones((2, 2)))
    data = tmp_path / "huge.csv"
    data.write_text("f0,f1,label\n1,1,a\n1.7e308,1.7e308,b\n")
    result = run("eval", ckpt, data)
    line = error_line(result)
    assert "huge.csv: line 3" in line and "overflow" in line
    result = run("predict", ckpt, "1,1", "1.7e308,1.7e308", "--keep-going")
    assert "RuntimeWarning" not in result.stderr and result.returncode == 2
    assert len(result.stdout.splitlines()) == 1 and "input row 2" in result.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from nncli.inference import evaluate_checkpoint

        with pytest.raises(NncliError, match="overflow"):
            evaluate_checkpoint(ckpt, data)
        # Finite scores 6e38 apart: softmax's s - max(s) passes float32's range, harmlessly.
        from nncli.inference import Predictor

        (tmp_path / "f32").mkdir()
        apart = Predictor(hand_made_checkpoint(tmp_path / "f32", np.array([[1.0, 0], [-1.0, 0]]),
                                               dtype="float32"))
        assert [p.top[0] for p in apart.predict(["3e38,0", "-3e38,0"])] == [("a", 1.0),
                                                                           ("b", 1.0)]


def hand_made_checkpoint(root: Path, W: np.ndarray, classes: list[str] | None = None,
                         dtype: str = "float64") -> Path:
    """A linear table model with weights W: (K, D), no normalization, saved as a checkpoint
    (features f0.., classes a, b or ``classes``)."""
    from nncli.checkpoint import Checkpoint, save_checkpoint
    from nncli.data import Normalization
    from nncli.nn.model import MLP

    K, D = W.shape
    data = write_table(root / "tiny.csv", np.zeros((2, D)), ["0", "1"])
    cfg = load_config(write_yaml(root / "hm.yaml", config_doc(
        data, data={"normalize": "none"}, train={"dtype": dtype})), [])
    model = MLP({"W1": W.astype(dtype), "b1": np.zeros(K, dtype=dtype)}, "relu")
    ckpt = Checkpoint(model=model, config=cfg, classes=classes or ["a", "b"],
                      input_shape=(D,), normalization=Normalization("none"),
                      features=[f"f{j}" for j in range(D)], data_kind="table")
    save_checkpoint(root / "hand.npz", ckpt)
    return root / "hand.npz"


# ---------------------------------------------------------------- 30,000 classes


def test_eval_of_30000_classes_fits_in_memory(tmp_path: Path) -> None:
    """The K x K confusion matrix of 30,000 classes would be 7.2 GB of int64: eval gives the
    pairs that occur instead, within a 3 GB address-space limit."""
    K, N = 30_000, 1_500
    rng = np.random.default_rng(0)
    W = rng.normal(size=(K, 2))
    classes = [str(k) for k in range(K)]
    ckpt = hand_made_checkpoint(tmp_path, W, classes, dtype="float32")
    X = rng.normal(size=(N, 2)).astype(np.float32)
    np.savez(tmp_path / "many.npz", X=X, y=rng.integers(0, K, size=N))
    result = run("eval", ckpt, tmp_path / "many.npz", "--json", limit_memory=3 << 30)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert "confusion" not in report and report["n"] == N and len(report["per_class"]) == K
    pairs = report["confusion_pairs"]
    assert sum(count for _, _, count in pairs) == N
    assert sum(count for t, p, count in pairs if t == p) == round(report["accuracy"] * N)
    table = run("eval", ckpt, tmp_path / "many.npz", limit_memory=3 << 30)
    assert table.returncode == 0, table.stderr[-2000:]
    assert len(table.stdout.splitlines()) < K + 40  # per-class rows, no 30,000-wide matrix
    assert "most frequent" in table.stdout


def test_sparse_confusion_gives_the_dense_reports() -> None:
    from nncli.metrics import Confusion, average_report, confusion_matrix, per_class_report

    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 7, size=200), rng.integers(0, 7, size=200)
    dense = confusion_matrix(y_true, y_pred, 8)  # class 7 absent from both
    sparse = Confusion.of(y_true, y_pred, 8)
    np.testing.assert_array_equal(sparse.dense(), dense)
    names = [f"c{k}" for k in range(8)]
    assert per_class_report(sparse, names) == per_class_report(dense, names)
    assert average_report(sparse) == average_report(dense)


def test_info_shows_hostile_class_names_and_warnings_escaped(tmp_path: Path) -> None:
    """``info`` prints class names and a data warning: neither may break its line or reach
    the terminal as an escape sequence."""
    from click.testing import CliRunner

    from nncli.cli import main

    table = tmp_path / "t.csv"
    table.write_text('a,label\n1,"x\x1b[2J\ny"\n2,z\n', encoding="utf-8")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data: {{train: {table}}}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["info", str(cfg)])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if x.startswith("classes"))
    assert line == "classes (2): x\\x1b[2J\\ny z"
    (tmp_path / "bad.csv").write_text('a,label\n1,x\n"\x1b[31m",y\n', encoding="utf-8")
    cfg.write_text(f"data: {{train: {tmp_path / 'bad.csv'}}}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["info", str(cfg)])
    warnings = [x for x in result.stderr.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 1 and "\x1b" not in result.stderr and "\\x1b[31m" in warnings[0]
