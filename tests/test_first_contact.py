"""First contact: the defaults train, a run that has not converged says so, --threads,
and the hints a new user needs when a path, a column or a delimiter is not what nncli
expects."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers_data import cli, write_yaml

from nncli.train import still_falling

# Palmer penguins' per-species means and standard deviations (bill length and depth in mm,
# flipper length in mm, body mass in g) and species counts, as published
# (Gorman, Williams & Fraser 2014; the palmerpenguins R package).
PENGUINS = {
    "Adelie": (152, [38.8, 18.3, 190.0, 3700.0], [2.7, 1.2, 6.5, 460.0]),
    "Chinstrap": (68, [48.8, 18.4, 195.8, 3733.0], [3.3, 1.1, 7.1, 384.0]),
    "Gentoo": (124, [47.5, 15.0, 217.2, 5076.0], [3.1, 1.0, 6.5, 504.0]),
}
PENGUIN_COLUMNS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


def penguins_like(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """A 344-row table shaped like the penguins one (4 numeric columns of very different
    scales, the label column ``species`` first, rows grouped by species), split 80/20."""
    rng = np.random.default_rng(seed)
    rows = []
    for species, (n, mean, std) in PENGUINS.items():
        values = rng.normal(mean, std, size=(n, 4))
        rows += [[species, *(f"{v:.1f}" for v in row)] for row in values]
    order = rng.permutation(len(rows))
    test_rows = {int(i) for i in order[: len(rows) // 5]}
    paths = []
    for name, keep in (("train.csv", False), ("test.csv", True)):
        lines = [",".join(["species", *PENGUIN_COLUMNS])]
        lines += [",".join(r) for i, r in enumerate(rows) if (i in test_rows) == keep]
        path = folder / name
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


# ---------------------------------------------------------------- the defaults train


def test_the_default_config_trains_a_penguins_like_table(tmp_path: Path) -> None:
    """Only the data keys are given: the defaults (adam, lr 0.001, 100 epochs, a linear
    softmax classifier on standardized columns) must reach >= 0.9 test accuracy. With the
    old defaults (sgd, 0.01, 10 epochs) such tables ended below chance."""
    train, test = penguins_like(tmp_path)
    cfg = write_yaml(tmp_path / "penguins.yaml", {
        "data": {"train": str(train), "test": str(test), "label_column": "species"}})
    result = cli("train", cfg, "--out", tmp_path / "run", "--quiet", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["epochs"] == 100
    assert summary["test"]["accuracy"] >= 0.9, summary["test"]


# ---------------------------------------------------------------- not converged


def test_still_falling_reads_the_last_tenth_of_the_run() -> None:
    steady = [1.0 - 0.009 * e for e in range(100)]  # falls by the same step to the end
    assert still_falling(steady, 100) == (steady[-11], steady[-1], 10)
    slowing = [0.1 + 1.35 * 0.985**e for e in range(100)]  # the penguins curve at lr 0.001
    assert still_falling(slowing, 100) == (slowing[-11], slowing[-1], 10)
    levelled = [0.1 + math.exp(-e / 5) for e in range(100)]
    assert still_falling(levelled, 100) is None
    flat_end = [1.0 / (1 + e) for e in range(50)] + [0.02] * 50
    assert still_falling(flat_end, 100) is None
    bouncing = steady[:-1] + [steady[-5]]  # the last epoch is not the lowest
    assert still_falling(bouncing, 100) is None
    separable = [1.0 / (1 + e) for e in range(100)]  # creeps towards 0: 0.1% of the fall
    assert still_falling(separable, 100) is None
    rising = [1.0 + 0.01 * e for e in range(90)] + [1.5 - 0.01 * e for e in range(10)]
    assert still_falling(rising, 100) is None  # lower at the end, but not below the start
    barely = [1.0 - 1e-4 * e for e in range(10)]  # lr far too small: hardly moved, steadily
    assert still_falling(barely, 10) == (barely[-3], barely[-1], 2)
    assert still_falling([0.9, 0.7, 0.5, 0.3], 4) is None  # too short to tell


def test_a_run_that_has_not_converged_says_so_once(tmp_path: Path) -> None:
    train, _ = penguins_like(tmp_path)
    doc = {"data": {"train": str(train), "label_column": "species"},
           "train": {"epochs": 10, "lr": 1e-4}}
    result = cli("train", write_yaml(tmp_path / "slow.yaml", doc), "--out", tmp_path / "slow",
                 "--quiet")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: the training loss was still "
                                                   "falling at the last epoch"), lines
    assert "raise train.epochs (now 10) or train.lr (now 0.0001)" in lines[0]
    summary = json.loads((tmp_path / "slow" / "summary.json").read_text())
    assert summary["converged"] is False

    doc["train"] = {"epochs": 30, "lr": 0.05, "lr_schedule": "cosine"}  # levels off
    result = cli("train", write_yaml(tmp_path / "done.yaml", doc), "--out", tmp_path / "done",
                 "--quiet")
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    assert json.loads((tmp_path / "done" / "summary.json").read_text())["converged"] is True


# ---------------------------------------------------------------- --threads


def blas_threads_after(args: list[str], env: dict[str, str]) -> int:
    """The thread count of NumPy's OpenBLAS in a process that ran ``nncli ARGS``."""
    code = (
        "import sys\n"
        "from nncli.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "import ctypes, glob, os, numpy\n"
        "libs = glob.glob(os.path.join(os.path.dirname(os.path.dirname(numpy.__file__)),\n"
        "                              'numpy.libs', '*openblas*'))\n"
        "print(ctypes.CDLL(libs[0]).scipy_openblas_get_num_threads64_() if libs else -1)\n"
    )
    clean = {k: v for k, v in os.environ.items()
             if not k.endswith("_NUM_THREADS") and k != "NNCLI_THREADS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**clean, **env}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1])


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: 1 thread either way")
def test_threads_option_and_variable_set_the_blas_threads(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "cfg.yaml", {"data": {"train": str(tmp_path / "none.csv")}})
    default = blas_threads_after(["info", str(cfg)], {})
    if default == -1:
        pytest.skip("NumPy without its bundled OpenBLAS")
    assert default > 1  # unset, nncli leaves BLAS as it is (all cores)
    assert blas_threads_after(["--threads", "1", "info", str(cfg)], {}) == 1
    assert blas_threads_after(["info", str(cfg)], {"NNCLI_THREADS": "1"}) == 1


def test_threads_must_be_a_positive_integer(monkeypatch: pytest.MonkeyPatch) -> None:
    result = cli("--threads", "0", "info", "x.yaml")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: Invalid value for '--threads': --threads='0': "
                                    "expected a positive integer")
    monkeypatch.setenv("NNCLI_THREADS", "abc")  # the error names the variable, not the flag
    result = cli("info", "x.yaml")
    assert result.exit_code == 2
    assert "NNCLI_THREADS='abc': expected a positive integer" in result.stderr


# ---------------------------------------------------------------- hints


def test_a_data_path_missing_here_but_present_next_to_the_config_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    penguins_like(project / "data")
    cfg = write_yaml(project / "cfg.yaml", {"data": {"train": "data/train.csv",
                                                     "label_column": "species"}})
    monkeypatch.chdir(tmp_path)  # not the config's folder
    result = cli("train", cfg, "--quiet")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert line.startswith("Error: data/train.csv: no such file or folder (relative paths are "
                           "taken from the current directory; it exists next to the config "
                           "file, as "), line
    assert str(project / "data" / "train.csv") in line
    monkeypatch.chdir(project)  # from there it trains
    assert cli("train", cfg, "--quiet", "--set", "train.epochs=1").exit_code == 0


def test_a_missing_path_without_a_twin_has_no_hint(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "cfg.yaml", {"data": {"train": "nowhere.csv"}})
    result = cli("train", cfg, "--quiet")
    assert result.exit_code == 2
    assert result.stderr == "Error: nowhere.csv: no such file or folder\n"


@pytest.mark.parametrize(("given", "suggested"), [("Species", "species"),
                                                  ("specis", "species"),
                                                  ("label", None)])
def test_a_label_column_not_found_suggests_the_closest_column(
        tmp_path: Path, given: str, suggested: str | None) -> None:
    train, _ = penguins_like(tmp_path)
    cfg = write_yaml(tmp_path / "cfg.yaml", {"data": {"train": str(train),
                                                      "label_column": given}})
    result = cli("train", cfg, "--quiet")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert line.startswith(f"Error: {train}: no label column '{given}' in the header "
                           f"(columns: species, bill_length_mm,"), line
    if suggested:
        assert line.endswith(f"— did you mean data.label_column: {suggested}?"), line
    else:
        assert line.endswith("— set data.label_column"), line


def test_a_semicolon_separated_csv_is_named_as_such(tmp_path: Path) -> None:
    table = tmp_path / "european.csv"
    table.write_text("a;b;label\n1,5;2,0;x\n3,5;1,0;y\n", encoding="utf-8")
    result = cli("train", write_yaml(tmp_path / "cfg.yaml", {"data": {"train": str(table)}}),
                 "--quiet")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"Error: {table}: the header looks ';'-separated "
                                    f"('a;b;label'); .csv tables are read as comma-separated")


@pytest.mark.parametrize(("name", "first"), [("", 0), ("Unnamed: 0", 0), ("row", 0),
                                             ("row", 1)])
def test_a_column_that_looks_like_a_saved_row_index_gets_a_warning(
        tmp_path: Path, name: str, first: int) -> None:
    """pandas' ``to_csv`` writes the index as a first column named ""; read back and
    written again it is "Unnamed: 0". In a table sorted by label it gives the label away."""
    rng = np.random.default_rng(0)
    lines = [f"{name},x,label"]
    lines += [f"{first + i},{rng.normal():.3f},{'ab'[i >= 10]}" for i in range(20)]
    table = tmp_path / "indexed.csv"
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = write_yaml(tmp_path / "cfg.yaml", {"data": {"train": str(table)},
                                             "train": {"epochs": 2}})
    result = cli("train", cfg, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.stderr
    warnings = [w for w in result.stderr.splitlines() if "saved row index" in w]
    shown = f"'{name}'" if name else "'' (no name)"
    assert warnings == [f"warning: {table}: column {shown} looks like a saved row index "
                        f"(0..N-1 or 1..N, as pandas' to_csv writes by default); as a feature "
                        f"it can leak the label — drop it (to_csv(..., index=False)) or set "
                        f"data.columns: {{'{name}': ignore}}"]


def test_an_ordinary_integer_column_is_not_taken_for_a_row_index(tmp_path: Path) -> None:
    lines = ["count,x,label"] + [f"{(7 * i) % 20},{i % 3},{'ab'[i % 2]}" for i in range(20)]
    table = tmp_path / "t.csv"
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = write_yaml(tmp_path / "cfg.yaml", {"data": {"train": str(table)},
                                             "train": {"epochs": 1}})
    result = cli("train", cfg, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0 and "row index" not in result.stderr, result.stderr


def test_standardizing_values_near_the_float64_limit_does_not_overflow() -> None:
    """Three values of 1e308 sum past float64's range; the statistics are still exact
    enough to normalize them, with no raw RuntimeWarning."""
    import warnings

    from nncli.data import fit_normalization

    X = np.array([[1e308, 1.0], [1e308, 2.0], [-1e308, 3.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        norm = fit_normalization(X, "standard", is_image=False)
    assert np.allclose(norm.shift, [1e308 / 3, 2.0], rtol=1e-12)
    assert np.allclose(norm.scale, [np.sqrt(8 / 9) * 1e308, np.sqrt(2 / 3)], rtol=1e-12)
    assert np.isfinite(norm.apply(X, "float64")).all()


def test_auto_init_starts_a_linear_classifier_at_chance_for_every_seed() -> None:
    """The lecture's sanity check: with small weights the softmax loss at init is ln K.
    A Xavier-sized linear classifier on the real penguins table started at ~3.7 for 3
    classes (seed 3), which the defaults never undid (0.23 accuracy after 100 epochs)."""
    from nncli.nn.layers import LINEAR_STD
    from nncli.nn.losses import data_loss
    from nncli.nn.model import MLP

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))  # standardized features
    y = rng.integers(0, 3, size=200)
    for seed in range(8):
        model = MLP.create(4, (), 3, "relu", "auto", np.random.default_rng([seed, 0]),
                           "float64")
        assert model.params["W1"].std() < 2 * LINEAR_STD
        loss, _ = data_loss("softmax", model.scores(X), y, 1.0, None)
        assert abs(loss - math.log(3)) < 0.02, (seed, loss)
    mlp = MLP.create(4, (16,), 3, "relu", "auto", np.random.default_rng(0), "float64")
    assert mlp.params["W2"].std() > 0.2  # an MLP's score layer stays Xavier: sqrt(2/19)


# ---------------------------------------------------------------- --out never replaces


@pytest.mark.parametrize("planted", ["metrics.csv", "summary.json", "metrics.jsonl"])
def test_out_into_a_folder_holding_a_file_a_run_writes_is_refused(tmp_path: Path,
                                                                  planted: str) -> None:
    """Not a run (no config.yaml, no checkpoints/), but a run would replace the file."""
    train, _ = penguins_like(tmp_path)
    cfg = write_yaml(tmp_path / "cfg.yaml", {"data": {"train": str(train),
                                                      "label_column": "species"}})
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / planted).write_text("the user's notes\n")
    (folder / "other.txt").write_text("unrelated\n")
    result = cli("train", cfg, "--out", folder, "--quiet")
    assert result.exit_code == 2
    assert result.stderr == (f"Error: {folder}: holds {planted}, which a run would replace; "
                             f"choose an empty or new folder for --out\n")
    assert sorted(p.name for p in folder.iterdir()) == sorted([planted, "other.txt"])
    assert (folder / planted).read_text() == "the user's notes\n"


def test_out_inside_an_existing_run_is_refused(tmp_path: Path) -> None:
    train, _ = penguins_like(tmp_path)
    cfg = write_yaml(tmp_path / "cfg.yaml", {"data": {"train": str(train),
                                                      "label_column": "species"},
                                             "train": {"epochs": 1}})
    run = tmp_path / "run"
    assert cli("train", cfg, "--out", run, "--quiet").exit_code == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    result = cli("train", cfg, "--out", run / "checkpoints", "--quiet")
    assert result.exit_code == 2
    assert result.stderr == (f"Error: {run / 'checkpoints'}: is inside the run {run}; choose "
                             f"a folder outside it\n")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


# ---------------------------------------------------------------- predict: headers


@pytest.fixture(scope="module")
def numeric_names_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint, table): a model trained on columns named 0, 1, 2 (pandas' default
    names) whose class depends on column 0 only."""
    root = tmp_path_factory.mktemp("numeric-names")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    labels = np.where(X[:, 0] > 0, "pos", "neg")
    lines = ["0,1,2,label"] + [",".join([*(f"{v:.3f}" for v in row), lab])
                               for row, lab in zip(X, labels)]
    table = root / "t.csv"
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = write_yaml(root / "cfg.yaml", {"data": {"train": str(table)},
                                         "train": {"epochs": 60, "lr": 0.05}})
    assert cli("train", cfg, "--out", root / "run", "--quiet").exit_code == 0
    return root / "run" / "checkpoints" / "best.npz", table


def predicted(checkpoint: Path, stdin: str) -> list[str]:
    result = cli("predict", checkpoint, input=stdin)
    assert result.exit_code == 0, result.stderr
    return [line.split("\t")[1] for line in result.stdout.splitlines()]


def test_a_header_of_numeric_names_on_stdin_is_matched_by_name(
        numeric_names_model: tuple[Path, Path]) -> None:
    """pandas writes 0, 1, 2, ... as column names: ``2,0,1`` on stdin is a header (the
    training column names, reordered), not a row."""
    checkpoint, _ = numeric_names_model
    rows = [(1.5, -3.0, 0.2), (-1.5, 3.0, 0.2)]  # pos, neg by column 0
    in_order = "\n".join(",".join(map(str, r)) for r in rows) + "\n"
    assert predicted(checkpoint, in_order) == ["pos", "neg"]
    reordered = "2,0,1\n" + "\n".join(f"{r[2]},{r[0]},{r[1]}" for r in rows) + "\n"
    assert predicted(checkpoint, reordered) == ["pos", "neg"]


def test_a_byte_order_mark_on_stdin_is_ignored(numeric_names_model: tuple[Path, Path]) -> None:
    checkpoint, _ = numeric_names_model
    assert predicted(checkpoint, "\ufeff1,0,2\n-3.0,1.5,0.2\n") == ["pos"]


def test_a_repeated_column_is_named_as_repeated(numeric_names_model: tuple[Path, Path]) -> None:
    checkpoint, _ = numeric_names_model
    result = cli("predict", checkpoint, input="0,0,2,label\n1,2,3,x\n")
    assert result.exit_code == 2
    assert "lacks the feature column(s) 1 and names column(s) more often than the training " \
           "data: 0" in result.stderr, result.stderr


def test_a_semicolon_header_in_predict_is_named_as_such(
        numeric_names_model: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, _ = numeric_names_model
    result = cli("predict", checkpoint, input="0;1;2\n1;2;3\n")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: stdin: line 1: the header looks ';'-separated")
    table = tmp_path / "eu.csv"
    table.write_text("0;1;2\n1;2;3\n", encoding="utf-8")
    result = cli("predict", checkpoint, table)
    assert result.exit_code == 2
    assert f"{table}: the header looks ';'-separated" in result.stderr


def test_a_table_file_without_a_header_says_a_header_is_needed(
        numeric_names_model: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, _ = numeric_names_model
    table = tmp_path / "rows.csv"
    table.write_text("5.1,3.5,1.4\n4.9,3.0,1.4\n", encoding="utf-8")
    result = cli("predict", checkpoint, table)
    assert result.exit_code == 2
    assert f"{table}: line 1 holds numbers, not column names: a table file needs a header " \
           f"line" in result.stderr


def test_init_takes_missing_values_and_text_columns(tmp_path: Path) -> None:
    """The published penguins table: NA in numeric columns, text in island and sex. Was
    an error naming both (issue 12: tables as they come)."""
    table = tmp_path / "penguins.csv"
    table.write_text("species,island,bill_length_mm,body_mass_g,sex\n"
                     "Adelie,Torgersen,39.1,3750,male\n"
                     "Adelie,Torgersen,NA,NA,NA\n"
                     "Gentoo,Biscoe,46.1,4500,female\n", encoding="utf-8")
    result = cli("init", table)
    assert result.exit_code == 0, result.stderr
    assert "columns: {island: category, bill_length_mm: number, body_mass_g: number, " \
           "sex: category}" in result.stdout
    assert result.stderr.count("\n") == 1 and "imputed 3 missing value(s)" in result.stderr
