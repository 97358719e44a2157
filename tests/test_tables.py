"""Tables as they come (SPEC "Tables as they come"): column types inferred or declared,
missing-value markers, imputation, one-hot categories, dropped label gaps, test_split, and
the encoding stored in the checkpoint and applied by eval and predict to raw rows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from helpers_data import cli, config_doc, load_npz, train_run, write_yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nncli.checkpoint import load_checkpoint, save_checkpoint
from nncli.config import config_from_dict
from nncli.data import Encoding, load_training_data, read_source
from nncli.errors import NncliError
from nncli.inference import Predictor, evaluate_checkpoint

ISLANDS = ("Biscoe", "Dream", "Torgersen")


def penguin_like(n: int = 60, seed: int = 0, gaps: bool = True) -> str:
    """A table like the published penguins CSV: text columns, NA gaps, label first."""
    rng = np.random.default_rng(seed)
    lines = ["species,island,bill_length_mm,body_mass_g,sex"]
    for i in range(n):
        species = ("Adelie", "Gentoo")[i % 2]
        bill = 38 + 9 * (i % 2) + rng.normal()
        mass = 3700 + 900 * (i % 2) + 100 * rng.normal()
        cells = [species, ISLANDS[int(rng.integers(3))], f"{bill:.1f}", f"{mass:.0f}",
                 ("male", "female")[int(rng.integers(2))]]
        if gaps and i % 7 == 3:
            cells[2:] = ["NA", "NA", "NA"]
        if gaps and i % 11 == 5:
            cells[1] = "?"
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def data_of(path: Path, **data: object):
    cfg = config_from_dict({"data": {"train": str(path), "label_column": "species",
                                     "normalize": "none", **data},
                            "train": {"dtype": "float64"}})
    return cfg, load_training_data(cfg)


# ---------------------------------------------------------------- typing


def test_each_column_type_is_inferred_and_declared_types_win(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("label,num,cat,zip,junk\n"
                    "a,1.5,red,01234,x\nb,NA,blue,99999,y\na,2.5,,01234,z\nb,3,red,12345,\n",
                    encoding="utf-8")
    _, data = data_of(path, label_column="label", columns={"zip": "category",
                                                           "junk": "ignore"})
    enc = data.encoding
    assert [(c.name, c.type) for c in enc.columns] == [("num", "number"), ("cat", "category"),
                                                       ("zip", "category")]
    assert enc.ignored == ["junk"]
    assert enc.columns[1].categories == ["blue", "red"] and enc.columns[1].missing_level
    assert enc.columns[2].categories == ["1234", "12345", "99999"] or \
        enc.columns[2].categories == ["01234", "12345", "99999"]
    assert enc.columns[0].fill == pytest.approx(7 / 3)
    assert data.train.X.shape == (4, 1 + 3 + 3)


def test_a_mixed_column_names_column_line_value_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("x,code,label\n1,10,a\n2,NA,b\n3,B7,a\n", encoding="utf-8")
    with pytest.raises(NncliError) as info:
        read_source(path, config_from_dict({"data": {"train": str(path)}}).data)
    message = str(info.value)
    assert message.startswith(f"{path}: line 4: feature column 'code' holds numbers (line 2: "
                              f"10) and text")
    assert "data.columns: {code: category}" in message
    assert message.endswith("line 4, column 2: not a number: 'B7'")


def test_text_first_then_a_number_is_mixed_too(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("x,sex,label\n1,male,a\n2,3,b\n", encoding="utf-8")
    with pytest.raises(NncliError, match=r"column 'sex' holds text \(line 2: 'male'\) and "
                                         r"numbers .* line 3, column 2: a number among text: "
                                         r"'3'$"):
        read_source(path, config_from_dict({"data": {"train": str(path)}}).data)


def test_na_values_are_configurable(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("x,label\n1,a\n-999,b\n3,a\n4,b\n", encoding="utf-8")
    _, data = data_of(path, label_column="label", na_values=["-999"])
    assert data.encoding.columns[0].fill == pytest.approx(8 / 3)
    assert data.train.X[:, 0].tolist() == [1, 8 / 3, 3, 4]


def test_label_gaps_drop_their_rows_with_one_warning(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(penguin_like(), encoding="utf-8")
    text = path.read_text().splitlines()
    text[4] = "NA" + text[4][text[4].index(","):]
    text[9] = text[9][text[9].index(","):]
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    cfg = write_yaml(tmp_path / "c.yaml", config_doc(path, data={"label_column": "species"},
                                                     train={"epochs": 1}))
    result = cli("train", cfg, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.stderr
    dropped = [w for w in result.stderr.splitlines() if "dropped" in w]
    assert dropped == [f"warning: {path}: dropped 2 row(s) whose label 'species' is missing "
                       f"(first at line 5)"]
    assert len(data_of(path)[1].train.y) == 58


# ---------------------------------------------------------------- scikit-learn parity


def sklearn_matrix(train: np.ndarray, other: np.ndarray, kinds: list[str]) -> np.ndarray:
    """ColumnTransformer(SimpleImputer(mean) | OneHotEncoder(handle_unknown=ignore)), one
    transformer per column in file order, fitted on ``train``, applied to ``other``."""
    compose = pytest.importorskip("sklearn.compose")
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    parts = []
    for j, kind in enumerate(kinds):
        if kind == "number":
            step = make_pipeline(FunctionTransformer(lambda a: a.astype(np.float64)),
                                 SimpleImputer(strategy="mean"))
        else:
            step = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        parts.append((f"c{j}", step, [j]))
    return compose.ColumnTransformer(parts).fit(train).transform(other)


def objects(path: Path, kinds: list[str]) -> np.ndarray:
    """The feature columns of a penguin-like table as sklearn takes them (NaN for NA)."""
    rows = [line.split(",")[1:] for line in path.read_text().splitlines()[1:]]
    out = np.empty((len(rows), len(kinds)), dtype=object)
    for i, row in enumerate(rows):
        for j, (cell, kind) in enumerate(zip(row, kinds)):
            gap = cell in ("NA", "?", "")
            out[i, j] = np.nan if gap else float(cell) if kind == "number" else cell
    return out


def test_imputation_and_one_hot_equal_scikit_learn(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    path = tmp_path / "p.csv"
    path.write_text(penguin_like(), encoding="utf-8")
    kinds = ["category", "number", "number", "category"]
    _, data = data_of(path)
    expected = sklearn_matrix(objects(path, kinds), objects(path, kinds), kinds)
    assert data.train.X.shape == expected.shape
    np.testing.assert_allclose(data.train.X, expected, rtol=0, atol=1e-12)


def test_eval_rows_with_unseen_categories_and_gaps_equal_scikit_learn(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    train, other = tmp_path / "p.csv", tmp_path / "q.csv"
    train.write_text(penguin_like(seed=0), encoding="utf-8")
    text = penguin_like(n=20, seed=1).replace("Dream", "Mars").replace("female", "NA")
    other.write_text(text, encoding="utf-8")
    kinds = ["category", "number", "number", "category"]
    cfg = config_from_dict({"data": {"train": str(train), "test": str(other),
                                     "label_column": "species", "normalize": "none"},
                            "train": {"dtype": "float64"}})
    data = load_training_data(cfg)
    expected = sklearn_matrix(objects(train, kinds), objects(other, kinds), kinds)
    np.testing.assert_allclose(data.test.X, expected, rtol=0, atol=1e-12)


def test_normalize_scales_numbers_and_leaves_one_hot_inputs_at_0_and_1(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(penguin_like(), encoding="utf-8")
    _, data = data_of(path, normalize="standard")
    numbers = data.encoding.number_inputs()
    X = data.train.X
    assert set(np.unique(X[:, ~numbers]).tolist()) == {0.0, 1.0}
    np.testing.assert_allclose(X[:, numbers].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(X[:, numbers].std(axis=0), 1, atol=1e-12)


def test_test_split_holds_out_a_stratified_test_set(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(penguin_like(n=100, gaps=False), encoding="utf-8")
    _, data = data_of(path, test_split=0.2, val_split=0.25)
    assert np.bincount(data.test.y).tolist() == [10, 10]
    assert np.bincount(data.val.y).tolist() == [10, 10]
    assert len(data.train.y) == 60 and "test_split 0.2" in data.test.source


# ---------------------------------------------------------------- the stored encoding


@pytest.fixture(scope="module")
def penguin_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("penguins")
    path = root / "p.csv"
    path.write_text(penguin_like(n=80), encoding="utf-8")
    doc = config_doc(path, data={"label_column": "species"}, model={"hidden": [8]},
                     train={"epochs": 3, "dtype": "float64"})
    return train_run(root / "run", doc), path


def test_the_encoding_survives_a_checkpoint_round_trip(penguin_run, tmp_path: Path) -> None:
    run, _ = penguin_run
    ckpt = load_checkpoint(run)
    _, meta = load_npz(run / "checkpoints" / "last.npz")
    assert meta["encoding"] == ckpt.encoding.to_json()
    save_checkpoint(tmp_path / "again.npz", ckpt)
    assert load_checkpoint(tmp_path / "again.npz").encoding == ckpt.encoding
    assert Encoding.from_json(json.loads(json.dumps(ckpt.encoding.to_json()))) == ckpt.encoding


def test_the_encoding_survives_a_resume(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(penguin_like(n=40), encoding="utf-8")
    doc = config_doc(path, data={"label_column": "species"}, train={"epochs": 2})
    run = train_run(tmp_path / "run", doc)
    before = load_checkpoint(run).encoding
    config = write_yaml(tmp_path / "more.yaml", {**doc, "train": {"epochs": 4}})
    result = cli("train", config, "--resume", run, "--quiet")
    assert result.exit_code == 0, result.stderr
    after = load_checkpoint(run)
    assert after.epoch == 4 and after.encoding == before


def test_predict_takes_raw_rows_unseen_categories_and_gaps_with_one_warning_each(
        penguin_run) -> None:
    run, _ = penguin_run
    rows = "island,bill_length_mm,body_mass_g,sex\nMars,40,NA,male\nBiscoe,?,4600,x\n" \
           "Dream,39,3600,NA\n"
    result = cli("predict", run, input=rows)
    assert result.exit_code == 0, result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["1", "2", "3"]
    warnings = result.stderr.splitlines()
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("warning: predict: imputed 3 missing value(s): "
                                  "bill_length_mm 1 (the training mean ")
    assert warnings[0].endswith(", sex 1 (a category of its own)")
    assert warnings[1] == ("warning: predict: 2 value(s) of categories not seen in training, "
                           "encoded as all zeros: island 1 (e.g. 'Mars'), sex 1 (e.g. 'x')")


def test_a_header_in_another_order_gives_the_predictions_of_eval(penguin_run,
                                                                 tmp_path: Path) -> None:
    run, path = penguin_run
    lines = [line.split(",") for line in path.read_text().splitlines()]
    order = [3, 0, 4, 2, 1]  # body_mass_g, species, sex, bill_length_mm, island
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("\n".join(",".join(row[k] for k in order) for row in lines) + "\n",
                        encoding="utf-8")
    straight = cli("predict", run, path, "--format", "csv")
    moved = cli("predict", run, shuffled, "--format", "csv")
    assert straight.exit_code == moved.exit_code == 0, moved.stderr
    assert straight.stdout == moved.stdout
    labels = [line.split(",")[1] for line in moved.stdout.splitlines()]
    truth = [row[0] for row in lines[1:]]
    accuracy = np.mean([a == b for a, b in zip(labels, truth)])
    assert evaluate_checkpoint(run, shuffled)["accuracy"] == pytest.approx(accuracy)


def test_a_model_of_numbers_imputes_a_gap_at_predict_with_the_training_mean(
        tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("x,y,label\n" + "".join(f"{i},{i % 3},{'ab'[i % 2]}\n"
                                            for i in range(1, 21)), encoding="utf-8")
    run = train_run(tmp_path / "run", config_doc(path, train={"epochs": 1}))
    predictor = Predictor(run)
    gap, filled = predictor.predict(["NA,1"]), predictor.predict(["10.5,1"])
    assert gap[0].top == filled[0].top  # the mean of x over 1..20


def test_missing_error_refuses_each_row_with_a_gap_at_predict(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("x,c,label\n" + "".join(f"{i},{'pq'[i % 2]},{'ab'[i % 2]}\n"
                                            for i in range(20)), encoding="utf-8")
    run = train_run(tmp_path / "run", config_doc(path, data={"missing": "error"},
                                                  train={"epochs": 1}))
    result = cli("predict", run, "--keep-going", "--", "1,p", "NA,p", "2,?")
    assert result.exit_code == 2
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["1"]
    assert result.stderr.splitlines() == [
        "Error: input row 2: missing value (column x; data.missing is error)",
        "Error: input row 3: missing value (column c; data.missing is error)"]


def test_ignored_columns_may_be_absent_or_present(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id,x,colour,label\n" + "".join(
        f"r{i},{i % 5},{('red', 'blue')[i % 2]},{'ab'[i % 2]}\n" for i in range(30)),
        encoding="utf-8")
    doc = config_doc(path, data={"columns": {"id": "ignore"}}, train={"epochs": 1})
    run = train_run(tmp_path / "run", doc)
    predictor = Predictor(run)
    with_id = cli("predict", run, input="id,x,colour\nzz,1,blue\n")
    without = cli("predict", run, input="colour,x\nblue,1\n")
    assert with_id.exit_code == without.exit_code == 0, with_id.stderr + without.stderr
    assert with_id.stdout == without.stdout
    assert predictor.predict(["1,blue"])[0].top[0][0] in ("a", "b")


def test_info_lists_every_column_with_its_type(penguin_run) -> None:
    run, path = penguin_run
    result = cli("info", run, "--json")
    columns = json.loads(result.stdout)["columns"]
    assert [(c["name"], c["type"], c["categories"]) for c in columns] == [
        ("island", "category", 3), ("bill_length_mm", "number", None),
        ("body_mass_g", "number", None), ("sex", "category", 2)]
    text = cli("info", run).stdout
    assert re.search(r"\nisland +category +3 +4\n", text), text  # 3 islands and '?'
    assert re.search(r"\nbill_length_mm +number +1\n", text), text


def test_init_writes_the_inferred_columns_and_trains_as_written(tmp_path: Path) -> None:
    path = tmp_path / "penguins.csv"
    path.write_text(penguin_like(n=120), encoding="utf-8")
    config = tmp_path / "c.yaml"
    result = cli("init", path, "-o", config)
    assert result.exit_code == 0, result.stderr
    import yaml

    doc = yaml.safe_load(config.read_text())
    assert doc["data"]["columns"] == {"island": "category", "bill_length_mm": "number",
                                      "body_mass_g": "number", "sex": "category"}
    doc["train"]["epochs"] = 2
    train_run(tmp_path / "run", doc)


def test_an_identifier_column_gets_one_warning_and_init_ignores_it(tmp_path: Path) -> None:
    path = tmp_path / "cars.csv"
    path.write_text("name,hp,label\n" + "".join(
        f"car {i},{100 + i % 7},{'ab'[i % 2]}\n" for i in range(60)), encoding="utf-8")
    result = cli("train", write_yaml(tmp_path / "c.yaml", config_doc(
        path, train={"epochs": 1})), "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"warning: {path}: column 'name' looks like an identifier (60 distinct values in 60 "
        f"rows, 60 one-hot inputs); if it names rows rather than describing them, set "
        f"data.columns: {{name: ignore}}"]
    init = cli("init", path)
    assert init.exit_code == 0 and "columns: {name: ignore, hp: number}" in init.stdout


# ---------------------------------------------------------------- properties

cells = st.one_of(st.sampled_from(["NA", "", "?"]),
                  st.text(alphabet="abcxyz", min_size=1, max_size=3),
                  st.floats(-1e6, 1e6).map(lambda v: f"{v!r}"))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]),
                          st.text(alphabet="pqrs", min_size=1, max_size=2) | st.just("NA"),
                          st.floats(-1e6, 1e6) | st.just(float("nan"))),
                min_size=2, max_size=30))
def test_one_hot_rows_sum_to_one_and_numbers_round_trip(tmp_path_factory, rows) -> None:
    path = tmp_path_factory.mktemp("prop") / "t.csv"
    path.write_text("label,c,x\n" + "".join(
        f"{label},{c},{'NA' if np.isnan(x) else repr(x)}\n" for label, c, x in rows),
        encoding="utf-8")
    if len({label for label, _, _ in rows}) < 2:
        return
    if all(np.isnan(x) for _, _, x in rows) or all(c == "NA" for _, c, _ in rows):
        return
    _, data = data_of(path, label_column="label", columns={"c": "category"})
    X, numbers = data.train.X, data.encoding.number_inputs()
    assert np.all(X[:, ~numbers].sum(axis=1) == 1.0)
    assert set(np.unique(X[:, ~numbers]).tolist()) <= {0.0, 1.0}
    given_x = np.array([x for _, _, x in rows])
    seen = ~np.isnan(given_x)
    assert X[seen, -1].tolist() == given_x[seen].tolist()
    assert np.allclose(X[~seen, -1], given_x[seen].mean(), rtol=1e-12, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.lists(cells, min_size=1, max_size=20))
def test_a_column_is_number_category_or_an_error(tmp_path_factory, column) -> None:
    path = tmp_path_factory.mktemp("types") / "t.csv"
    path.write_text("v,label\n" + "".join(f"{c},{'ab'[i % 2]}\n" for i, c in enumerate(column)),
                    encoding="utf-8")
    values = [c for c in column if c not in ("NA", "", "?")]
    numeric = [_is_float(c) for c in values]
    cfg = config_from_dict({"data": {"train": str(path)}})
    if values and any(numeric) and not all(numeric):
        with pytest.raises(NncliError, match="set data.columns: {v: category}"):
            read_source(path, cfg.data)
        return
    raw = read_source(path, cfg.data)
    assert (raw.levels[0] is None) == (not values or all(numeric))


@settings(max_examples=25, deadline=None)
@given(chunk_cells=st.integers(1, 40), seed=st.integers(0, 10))
def test_a_typed_table_reads_the_same_whatever_the_chunking(tmp_path_factory, chunk_cells,
                                                            seed) -> None:
    """Text and gaps move chunks between the fast and the exact path: the typed result (X,
    each category's texts, the lines) does not depend on where the chunks end."""
    import nncli.data.tables as tables

    path = tmp_path_factory.mktemp("chunks") / "p.csv"
    text = penguin_like(n=30, seed=seed)
    lines = text.splitlines()
    lines[1:11] = [line.replace("NA,NA,NA", "40,4000,male").replace(",?,", ",Dream,")
                   for line in lines[1:11]]  # no gap at first: the fast path may start
    if seed % 2:  # numbers only: the fast path reads the plain chunks, the exact one the gaps
        lines = [",".join(line.split(",")[i] for i in (0, 2, 3)) for line in lines]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = config_from_dict({"data": {"train": str(path), "label_column": "species"}})

    def typed() -> tuple:
        raw = read_source(path, cfg.data)
        texts = [None if lv is None else [lv[int(c)] if c == c else None for c in raw.X[:, j]]
                 for j, lv in enumerate(raw.levels)]
        numbers = [raw.X[:, j].tolist() for j, lv in enumerate(raw.levels) if lv is None]
        return str(numbers), texts, raw.label_lines.tolist(), raw.labels.tolist()

    whole = typed()
    original = tables.CHUNK_CELLS
    tables.CHUNK_CELLS = chunk_cells
    try:
        assert typed() == whole
    finally:
        tables.CHUNK_CELLS = original


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- the bundled penguins

PENGUINS = Path(__file__).resolve().parents[1] / "datasets" / "penguins"


def test_the_penguins_split_is_the_published_file_verbatim() -> None:
    import hashlib

    published = (PENGUINS / "penguins.csv").read_bytes()
    assert hashlib.sha256(published).hexdigest() == \
        "f204db2c753b0937caac3cb35258562c14f073e4bbc76be24b4c51ce22767a93"
    header, *rows = published.decode().splitlines()
    parts = [(PENGUINS / f"{name}.csv").read_text().splitlines() for name in ("train", "test")]
    assert all(part[0] == header for part in parts)
    assert sorted(parts[0][1:] + parts[1][1:]) == sorted(rows)


def test_the_shipped_penguins_config_reaches_the_readme_accuracy(tmp_path: Path,
                                                                  monkeypatch) -> None:
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    result = cli("train", root / "configs" / "penguins-mlp.yaml", "--out", tmp_path / "run",
                 "--quiet", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["test"]["accuracy"] >= 0.97
