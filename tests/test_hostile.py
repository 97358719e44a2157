"""Hostile inputs through the real CLI: every one is refused with exit code 2 and one
``Error:`` line naming the culprit, without a traceback and without touching any file that
was already there (an existing run directory and its checkpoints survive byte for byte).

Each case builds its hostile input inside a copy of a small, finished run (``run/``, trained
once per module on ``train.csv`` with ``cfg.yaml``), returns the command line and the
substring the error line must contain. Paths in the command line are absolute; the working
directory is the case's own folder, so a stray relative write would be caught too.

Choice documented here: files without an image extension inside class folders (notes,
CSVs) are skipped with one ``warning:`` line on stderr giving how many; training goes on.
"""

from __future__ import annotations

import json
import shutil
import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from helpers_data import blobs, table_text
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from nncli.cli import main

Case = Callable[[Path], tuple[list[str], str]]


# ---------------------------------------------------------------- the existing run


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``train.csv`` (classes cat/dog/frog, 4 features), ``cfg.yaml`` and
    ``run/``, a finished 2-epoch run of a 4-8-3 MLP."""
    root = tmp_path_factory.mktemp("base")
    X, y = blobs(n_per_class=6)
    (root / "train.csv").write_text(table_text(X, np.array(["cat", "dog", "frog"])[y]),
                                     encoding="utf-8")
    doc = {"data": {"train": str(root / "train.csv")}, "model": {"hidden": [8]},
           "train": {"epochs": 2, "batch_size": 8}}
    (root / "cfg.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    result = invoke("train", root / "cfg.yaml", "--out", root / "run", "--quiet")
    assert result.exit_code == 0, result.stderr
    return root


def invoke(*args: Any, input: str | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under ``root``: its bytes, mtime_ns and mode."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            st = path.stat()
            out[str(path.relative_to(root))] = (path.read_bytes(), st.st_mtime_ns, st.st_mode)
    return out


# ---------------------------------------------------------------- builders


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def config(root: Path, source: str | Path | None = None, name: str = "hostile.yaml",
           **sections: Any) -> Path:
    """A config training on ``source`` (default the good train.csv), plus ``sections``."""
    doc: dict[str, Any] = {"data": {"train": str(source or root / "train.csv")}}
    for key, value in sections.items():
        if key == "data":
            doc["data"].update(value)
        else:
            doc[key] = value
    return write(root / name, yaml.safe_dump(doc, sort_keys=False))


def train(root: Path, cfg: Path, *extra: Any) -> list[str]:
    """``nncli train CFG --out new-run --quiet``: beside the existing run, into a folder
    that must not be created when the input is refused."""
    return ["train", str(cfg), "--out", str(root / "new-run"), "--quiet", *map(str, extra)]


def resume(cfg: Path, checkpoint: Path, *extra: Any) -> list[str]:
    """``nncli train CFG --resume CHECKPOINT --quiet``: aimed at the existing run."""
    return ["train", str(cfg), "--resume", str(checkpoint), "--quiet", *map(str, extra)]


def table(root: Path, lines: list[str], name: str = "bad.csv") -> Path:
    return write(root / name, "\n".join(lines) + "\n")


GOOD_ROWS = ["1.0,2.0,cat", "1.5,2.5,dog", "3.0,1.0,cat", "0.5,0.1,dog"]


def png(path: Path, value: int = 0, size: tuple[int, int] = (4, 4)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size[::-1], value, dtype=np.uint8)).save(path)
    return path


def image_folder(root: Path, per_class: dict[str, int], name: str = "imgs") -> Path:
    folder = root / name
    for cls, n in per_class.items():
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            png(folder / cls / f"{i}.png", value=40 * i + 7 * len(cls))
    return folder


class Trap:
    """Unpickling a Trap creates the file ``path``: proof that something unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


TRAP_NAME = "UNPICKLED"


def npz(path: Path, **arrays: Any) -> Path:
    with open(path, "wb") as handle:  # np.savez with a handle: no ".npz" appended
        np.savez(handle, **arrays)
    return path


def last(root: Path) -> Path:
    return root / "run" / "checkpoints" / "last.npz"


def rewrite_checkpoint(src: Path, dst: Path, change: Callable[[dict], None]) -> Path:
    """Copy checkpoint ``src`` to ``dst`` with ``change(arrays)`` applied (meta as a dict)."""
    with np.load(src, allow_pickle=False) as z:
        arrays: dict[str, Any] = {k: z[k] for k in z.files}
    arrays["meta"] = json.loads(str(arrays["meta"]))
    change(arrays)
    arrays["meta"] = np.array(json.dumps(arrays["meta"]))
    return npz(dst, **arrays)


# ---------------------------------------------------------------- the cases


def yaml_control_character(root: Path):
    cfg = write(root / "ctrl.yaml", "data:\n  train: x.csv\n  val: a\x07b\n")
    return ["info", str(cfg)], "ctrl.yaml: invalid YAML at line 3, column 9"


def yaml_alias_bomb(root: Path):
    """A 700-byte config whose `name` is 10^8 strings through nested aliases."""
    items = ["&l0 [" + ", ".join(["lol"] * 10) + "]"]
    items += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 8)]
    cfg = write(root / "bomb.yaml", "name: [" + ", ".join(items) + "]\ndata: {train: t.csv}\n")
    return ["info", str(cfg)], "bomb.yaml: config key 'name': expected a non-empty string"


def malformed_yaml(root: Path):
    cfg = write(root / "bad.yaml", "data:\n  train: x.csv\ntrain:\n  lr: [0.1\n  epochs: 3\n")
    return train(root, cfg), "bad.yaml: invalid YAML at line 5, column"


def unknown_key(root: Path):
    cfg = config(root, train={"learning_rate": 0.1})
    return train(root, cfg), "unknown config key 'train.learning_rate' — did you mean 'train.lr'"


def wrong_type(root: Path):
    return train(root, config(root, train={"epochs": "ten"})), "'train.epochs': expected an integer"


def out_of_range(root: Path):
    return train(root, config(root, data={"val_split": 1.5})), "'data.val_split': must be < 1"


def negative_lr(root: Path):
    return train(root, config(root, train={"lr": -0.1})), "'train.lr': must be > 0"


def config_not_a_mapping(root: Path):
    return train(root, write(root / "list.yaml", "- a\n- b\n")), "list.yaml: the config must be"


def config_is_a_folder(root: Path):
    (root / "folder.yaml").mkdir()
    return train(root, root / "folder.yaml"), "folder.yaml' is a directory"


def missing_data_path(root: Path):
    return train(root, config(root, root / "nope.csv")), "nope.csv: no such file or folder"


def unknown_data_kind(root: Path):
    data = write(root / "data.txt", "1,2,cat\n")
    return train(root, config(root, data)), "data.txt: unknown data kind '.txt'"


def val_missing(root: Path):
    return (train(root, config(root, data={"val": str(root / "val-nope.csv")})),
            "val-nope.csv: no such file")


def empty_image_folder(root: Path):
    (root / "empty").mkdir()
    return train(root, config(root, root / "empty")), "empty: empty folder"


def one_class_images(root: Path):
    folder = image_folder(root, {"onlycat": 3})
    return train(root, config(root, folder)), "found only one class ('onlycat')"


def class_folder_without_images(root: Path):
    folder = image_folder(root, {"cat": 2})
    write(folder / "dog" / "readme.txt", "woof")
    return train(root, config(root, folder)), "imgs/dog: class folder has no images"


def corrupt_image(root: Path):
    folder = image_folder(root, {"cat": 2, "dog": 2})
    (folder / "dog" / "1.png").write_bytes(b"\x89PNG this is not really a png")
    return train(root, config(root, folder)), "imgs/dog/1.png: cannot decode image"


def truncated_png(root: Path):
    folder = image_folder(root, {"cat": 2, "dog": 2})
    noisy = np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)
    bad = folder / "cat" / "1.png"
    Image.fromarray(noisy).resize((4, 4)).save(bad)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    return train(root, config(root, folder)), "imgs/cat/1.png: cannot decode image"


def mixed_image_sizes(root: Path):
    folder = image_folder(root, {"cat": 2, "dog": 2})
    png(folder / "dog" / "big.png", size=(6, 5))
    return train(root, config(root, folder)), "big.png is 6x5"


def csv_missing_value(root: Path):
    data = table(root, ["a,b,label", *GOOD_ROWS[:2], "3.0,,cat", GOOD_ROWS[3]])
    # no missing-value markers: a blank cell is an error (by default it is imputed)
    return train(root, config(root, data, data={"na_values": []})), "bad.csv: line 4"


def csv_non_numeric(root: Path):
    data = table(root, ["a,b,label", *GOOD_ROWS[:3], "0.5,seven,dog"])
    return train(root, config(root, data)), "bad.csv: line 5"


def csv_ragged_row(root: Path):
    data = table(root, ["a,b,label", GOOD_ROWS[0], "1.5,2.5,9.0,dog", *GOOD_ROWS[2:]])
    return train(root, config(root, data)), "bad.csv: line 3"


def csv_nan_value(root: Path):
    data = table(root, ["a,b,label", *GOOD_ROWS[:3], "nan,1.0,dog"])
    # no missing-value markers: nan is a non-finite number (by default it marks a gap)
    return train(root, config(root, data, data={"na_values": []})), "bad.csv: line 5"


def csv_duplicate_label_column(root: Path):
    data = table(root, ["a,label,b,label", "1,cat,2,cat", "2,dog,3,dog", "1,cat,1,cat"])
    return train(root, config(root, data)), "bad.csv: the label column 'label' appears 2 times"


def csv_missing_label_column(root: Path):
    data = table(root, ["a,b,target", *GOOD_ROWS])
    return train(root, config(root, data)), "bad.csv: no label column 'label'"


def csv_header_only(root: Path):
    data = table(root, ["a,b,label"])
    return train(root, config(root, data)), "bad.csv: the table has a header but no rows"


def csv_not_utf8(root: Path):
    data = root / "latin.csv"
    data.write_bytes("a,b,label\n1,2,caf\xe9\n2,3,dog\n".encode("latin-1"))
    return train(root, config(root, data)), "latin.csv: not a UTF-8 text table"


def npz_without_x(root: Path):
    data = npz(root / "noX.npz", features=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]))
    return train(root, config(root, data)), "noX.npz: missing array(s) X"


def npz_mismatched_lengths(root: Path):
    data = npz(root / "short.npz", X=np.zeros((5, 2)), y=np.array([0, 1, 0, 1]))
    return train(root, config(root, data)), "short.npz: y must have shape (5,)"


def npz_pickled_object(root: Path):
    X = np.empty((2, 1), dtype=object)
    X[0, 0], X[1, 0] = Trap(root / TRAP_NAME), 1.0
    data = npz(root / "evil.npz", X=X, y=np.array([0, 1]))
    return train(root, config(root, data)), "evil.npz: holds pickled Python objects"


def eval_unseen_labels(root: Path):
    X, y = blobs(n_per_class=2)
    data = write(root / "other.csv", table_text(X, np.array(["cat", "dog", "zebra"])[y]))
    return ["eval", str(last(root)), str(data)], "other.csv: line 6: label 'zebra'"


def eval_wrong_dimension(root: Path):
    X, y = blobs(n_per_class=2, n_features=3)
    data = write(root / "narrow.csv", table_text(X, np.array(["cat", "dog", "frog"])[y]))
    return ["eval", str(last(root)), str(data)], "narrow.csv: eval examples have 3 features"


def predict_wrong_dimension(root: Path):
    return ["predict", str(last(root)), "1.0,2.0,3.0"], "input row 1: expected 4 feature values"


def predict_not_a_number(root: Path):
    return ["predict", str(last(root)), "1.0,2.0,x,4.0"], "input row 1: not a number: 'x'"


def checkpoint_format_version(root: Path):
    future = rewrite_checkpoint(last(root), root / "future.npz",
                                lambda a: a["meta"].update(format=99))
    return ["info", str(future)], "future.npz: checkpoint format 99 is not supported"


def checkpoint_missing_weights(root: Path):
    def drop(arrays: dict) -> None:
        del arrays["W2"]

    broken = rewrite_checkpoint(last(root), root / "broken.npz", drop)
    return ["predict", str(broken), "1,2,3,4"], "broken.npz: damaged checkpoint"


def checkpoint_wrong_weight_shape(root: Path):
    def narrow(arrays: dict) -> None:
        arrays["W2"] = arrays["W2"][:, :5]

    broken = rewrite_checkpoint(last(root), root / "narrow.npz", narrow)
    return (["eval", str(broken), str(root / "train.csv")],
            "narrow.npz: damaged checkpoint (missing or invalid W2")


def checkpoint_nan_weights(root: Path):
    def poison(arrays: dict) -> None:
        arrays["W1"][0, 0] = np.nan

    broken = rewrite_checkpoint(last(root), root / "nan.npz", poison)
    return ["predict", str(broken), "1,2,3,4"], "nan.npz: damaged checkpoint (missing or invalid W1"


def checkpoint_bad_rng_state(root: Path):
    broken = rewrite_checkpoint(last(root), root / "rng.npz",
                                lambda a: a["meta"].update(rng_state={"state": "?"}))
    return resume(root / "cfg.yaml", broken), "rng.npz: damaged checkpoint"


def text_file_named_npz(root: Path):
    fake = write(root / "fake.npz", "I am a text file, not a checkpoint\n")
    return ["eval", str(fake), str(root / "train.csv")], "fake.npz: not an nncli checkpoint"


def checkpoint_pickled_object(root: Path):
    def add_trap(arrays: dict) -> None:
        arrays["opt_evil"] = np.array([Trap(root / TRAP_NAME)], dtype=object)

    evil = rewrite_checkpoint(last(root), root / "evil-ckpt.npz", add_trap)
    return ["eval", str(evil), str(root / "train.csv")], "evil-ckpt.npz: holds pickled Python"


def checkpoint_folder_without_last(root: Path):
    (root / "not-a-run").mkdir()
    return (["predict", str(root / "not-a-run"), "1,2,3,4"],
            "not-a-run: is a folder without checkpoints/last.npz")


def out_inside_a_file(root: Path):
    blocker = write(root / "blocker", "a regular file where a folder should be\n")
    return (["train", str(root / "cfg.yaml"), "--out", str(blocker / "run"), "--quiet"],
            "blocker/run: cannot write the run directory")


def resume_different_model(root: Path):
    cfg = config(root, model={"hidden": [5]}, train={"epochs": 4})
    return (resume(cfg, root / "run"),
            "cannot resume with this config: model.hidden [8] vs [5]")


def resume_missing_checkpoint(root: Path):
    return (resume(root / "cfg.yaml", root / "nowhere.npz"),
            "nowhere.npz: no such checkpoint file")


def out_into_an_existing_run(root: Path):
    """A new run aimed at a finished one: refused, the old run stays byte-identical."""
    return (["train", str(root / "cfg.yaml"), "--out", str(root / "run"), "--quiet",
             "--set", "train.epochs=1"],
            f"{root / 'run'}: already holds a run (config.yaml or checkpoints/); to continue "
            f"it use --resume {root / 'run'} without --out")


def out_into_a_run_without_checkpoints(root: Path):
    (root / "killed-early" / "checkpoints").mkdir(parents=True)
    write(root / "killed-early" / "config.yaml", "seed: 0\n")
    return (["train", str(root / "cfg.yaml"), "--out", str(root / "killed-early"), "--quiet"],
            "killed-early: already holds a run (config.yaml or checkpoints/); it has no "
            "checkpoint yet: delete it to start over")


def resume_a_finished_run(root: Path):
    return (resume(root / "cfg.yaml", root / "run"),
            "run: the run has already reached train.epochs (2 of 2); to train longer, resume "
            "with --set train.epochs=N (N > 2)")


def resume_a_finished_run_with_fewer_epochs(root: Path):
    return (resume(root / "cfg.yaml", root / "run", "--set", "train.epochs=1"),
            "run: the run has already reached train.epochs (2 of 1)")


def resume_with_out(root: Path):
    return (resume(root / "cfg.yaml", root / "run", "--set", "train.epochs=4", "--out",
                   root / "elsewhere"),
            "drop --out")


def set_unknown_key(root: Path):
    return (train(root, root / "cfg.yaml", "--set", "train.epoch=3"),
            "unknown config key 'train.epoch' — did you mean 'train.epochs'")


def set_without_equals(root: Path):
    return (train(root, root / "cfg.yaml", "--set", "train.lr"),
            "--set 'train.lr': expected KEY=VALUE")


def set_bad_value(root: Path):
    return (train(root, root / "cfg.yaml", "--set", "train.batch_size=0"),
            "cfg.yaml: config key 'train.batch_size': must be >= 1")


def gradcheck_missing_config(root: Path):
    return ["gradcheck", str(root / "absent.yaml")], "absent.yaml: config file not found"


def early_stopping_without_validation(root: Path):
    cfg = config(root, train={"early_stopping": {"patience": 2, "metric": "val_acc"}})
    return train(root, cfg), "'train.early_stopping.metric'"


def class_weight_unknown_class(root: Path):
    cfg = config(root, loss={"class_weight": {"cat": 2.0, "unicorn": 1.0}})
    return train(root, cfg), "'loss.class_weight.unicorn'"


CASES: dict[str, Case] = {f.__name__: f for f in [
    malformed_yaml, yaml_control_character, yaml_alias_bomb,
    unknown_key, wrong_type, out_of_range, negative_lr, config_not_a_mapping, config_is_a_folder,
    missing_data_path, unknown_data_kind, val_missing, empty_image_folder, one_class_images,
    class_folder_without_images, corrupt_image, truncated_png, mixed_image_sizes,
    csv_missing_value, csv_non_numeric, csv_ragged_row, csv_nan_value, csv_duplicate_label_column,
    csv_missing_label_column, csv_header_only, csv_not_utf8, npz_without_x, npz_mismatched_lengths,
    npz_pickled_object, eval_unseen_labels, eval_wrong_dimension, predict_wrong_dimension,
    predict_not_a_number, checkpoint_format_version, checkpoint_missing_weights,
    checkpoint_wrong_weight_shape, checkpoint_nan_weights, checkpoint_bad_rng_state,
    text_file_named_npz, checkpoint_pickled_object, checkpoint_folder_without_last,
    out_inside_a_file, resume_different_model, resume_missing_checkpoint,
    out_into_an_existing_run, out_into_a_run_without_checkpoints, resume_a_finished_run,
    resume_a_finished_run_with_fewer_epochs, resume_with_out, set_unknown_key,
    set_without_equals, set_bad_value, gradcheck_missing_config, early_stopping_without_validation,
    class_weight_unknown_class,
]}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_hostile_input_is_one_error_line_and_touches_nothing(
        case: str, base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "case"
    shutil.copytree(base, root)  # copy2 keeps mtimes: the run looks as it was left
    argv, culprit = CASES[case](root)
    monkeypatch.chdir(root)
    before = snapshot(root)

    began = time.perf_counter()
    result = invoke(*argv)
    assert time.perf_counter() - began < 5  # refused at once (e.g. no alias expansion)

    assert result.exit_code == 2, (result.exit_code, result.stderr, result.stdout)
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    line = result.stderr.rstrip("\n")
    assert line.startswith("Error: ") and culprit in line, line
    assert "internal error" not in line
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""
    assert snapshot(root) == before  # nothing changed, nothing added
    assert not (root / TRAP_NAME).exists()


def test_the_pickle_trap_is_armed(tmp_path: Path) -> None:
    """The trap cases prove something only if unpickling the trap does create its file."""
    X = np.empty((1, 1), dtype=object)
    X[0, 0] = Trap(tmp_path / TRAP_NAME)
    path = npz(tmp_path / "evil.npz", X=X, y=np.array([0]))
    with np.load(path, allow_pickle=True) as archive:
        archive["X"]
    assert (tmp_path / TRAP_NAME).exists()


# ---------------------------------------------------------------- non-image files


def test_non_image_files_in_class_folders_are_skipped_with_one_warning(tmp_path: Path) -> None:
    folder = image_folder(tmp_path, {"cat": 3, "dog": 3})
    write(folder / "cat" / "notes.txt", "meow")
    write(folder / "dog" / "labels.csv", "x,y\n")
    write(folder / "dog" / "deep" / "README", "nested")
    cfg = config(tmp_path, folder, train={"epochs": 1})
    result = invoke("train", cfg, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "skipped 3 file(s) without an image extension" in lines[0], lines
    assert (tmp_path / "run" / "checkpoints" / "last.npz").exists()


# ---------------------------------------------------------------- random YAML documents

YAML_TOKENS = ["data:", "train:", "model:", "loss:", "reg:", "lambda:", "hidden:", "epochs:",
               "lr:", "batch_size:", "full", "null", "~", "-", "- ", ":", ": ", "{", "}", "[",
               "]", ",", "'", '"', "&a", "*a", "!!int", "!!float", "!!str", "!!python/object",
               "!!binary", "---", "...", "#", "|", ">", "?", "%YAML 1.1", "\n", "\n  ",
               "\n    ", "\t", " ", "1e-3", "-1", "0", "1e999", ".nan", "2020-13-45", "yes",
               "0x1F", "<<:", "\\", "\x00", "é", "train.csv", "softmax", "relu"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
keys = st.one_of(st.sampled_from(["data", "train", "model", "loss", "reg", "seed", "name",
                                  "hidden", "lr", "epochs", "lambda", "type", "batch_size",
                                  "early_stopping", "init", "normal", "step", "every"]),
                 st.text(max_size=8))
nested = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)), max_leaves=20)
yamlish = st.lists(st.sampled_from(YAML_TOKENS), max_size=30).map("".join)
SCHEMA_PATHS = ["name", "seed", "data", "data.train", "data.val", "data.val_split",
                "data.image", "data.image.size", "data.image.mode", "data.label_column",
                "data.normalize", "model", "model.hidden", "model.activation", "model.init",
                "loss.type", "loss.margin", "loss.class_weight", "reg.lambda", "train.epochs",
                "train.batch_size", "train.lr", "train.optimizer", "train.momentum",
                "train.lr_schedule", "train.early_stopping", "train.dtype"]


def _mutate(path: str, value: Any) -> str:
    """A valid small config over ``train.csv`` with the key ``path`` set to ``value``."""
    doc: dict[str, Any] = {"data": {"train": "train.csv"}, "model": {"hidden": [3]},
                           "train": {"epochs": 1}}
    node = doc
    *parents, leaf = path.split(".")
    for part in parents:  # every parent in SCHEMA_PATHS is a section (a mapping)
        node = node.setdefault(part, {})
    node[leaf] = value
    return yaml.safe_dump(doc, allow_unicode=True)


# Values for one key of a valid config: small integers, so that a random model.hidden stays
# a model gradcheck can check in milliseconds.
small_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 12),
                          st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
small_nested = st.recursive(small_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)), max_leaves=12)
mutated = st.builds(_mutate, st.sampled_from(SCHEMA_PATHS), small_nested)
documents = st.one_of(yamlish, nested.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
                      st.text(alphabet=string.printable, max_size=80), mutated)


@settings(max_examples=40)
@given(text=documents, command=st.sampled_from(["info", "gradcheck"]))
def test_random_yaml_never_crashes(text: str, command: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Random token soup, random structures and valid configs with one key set to a random
    value (next to a real ``train.csv``): exit 0, 1 or 2, never a traceback."""
    monkeypatch.chdir(tmp_path)
    if not (tmp_path / "train.csv").exists():
        X, y = blobs(n_per_class=4)
        write(tmp_path / "train.csv", table_text(X, np.array(["a", "b", "c"])[y]))
    cfg = tmp_path / "random.yaml"
    cfg.write_text(text, encoding="utf-8", errors="surrogatepass")
    result = invoke(command, cfg)
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        assert "internal error" not in lines[0], lines[0]

