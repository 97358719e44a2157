"""The YAML config: defaults, unknown keys, type/range errors, --set overrides, round trips."""

from __future__ import annotations

import math

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nncli.config import (
    ACTIVATION_NAMES,
    LOSS_NAMES,
    OPTIMIZER_NAMES,
    SCHEMA,
    Config,
    apply_overrides,
    config_from_dict,
    load_config,
    parse_yaml,
    suggest_key,
)
from nncli.errors import NncliError

MINIMAL = {"data": {"train": "datasets/t.csv"}}

# Every key and default of the SPEC's config block.
SPEC_DEFAULTS = {
    "name": "run",
    "seed": 0,
    "task": "classification",  # SPEC "Regression" (issue 12)
    "data": {
        "train": "datasets/t.csv",
        "val": None,
        "val_split": 0.0,
        "test": None,
        "image": {"size": None, "mode": "L"},
        "label_column": "label",
        "normalize": "standard",
        "normalize_target": "standard",  # SPEC "Regression" (issue 12)
        # SPEC "Tables as they come" (issue 12)
        "columns": {},
        "na_values": ["", "NA", "N/A", "NaN", "nan", "null", "None", "?"],
        "missing": "impute",
        "test_split": 0.0,
    },
    "model": {"hidden": [], "activation": "relu", "init": "auto"},
    "loss": {"type": "softmax", "margin": 1.0, "class_weight": None},
    "reg": {"lambda": 0.0},
    "train": {
        "epochs": 100,
        "batch_size": 64,
        "lr": 0.001,
        "optimizer": "adam",
        "momentum": 0.9,
        "lr_schedule": "constant",
        "early_stopping": None,
        "dtype": "float32",
        "checkpoint_every": 1,
    },
}


def with_(section: str, key: str, value):
    """MINIMAL plus ``section.key = value`` (section "" for the top level)."""
    doc = {"data": dict(MINIMAL["data"])}
    if section:
        doc.setdefault(section, {})[key] = value
    else:
        doc[key] = value
    return doc


def error_of(raw) -> str:
    with pytest.raises(NncliError) as info:
        config_from_dict(raw)
    return str(info.value)


# ---------------------------------------------------------------- defaults


def test_every_default_is_filled_in_as_the_spec_lists():
    assert config_from_dict(MINIMAL).to_dict() == SPEC_DEFAULTS


def test_defaults_as_typed_attributes():
    cfg = config_from_dict(MINIMAL)
    assert (cfg.seed, cfg.reg_lambda, cfg.model.hidden, cfg.data.image.size) == (0, 0.0, (), None)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr) == (100, 64, 0.001)
    assert cfg.train.optimizer == "adam"
    assert (cfg.loss.type, cfg.loss.margin, cfg.train.momentum) == ("softmax", 1.0, 0.9)
    assert isinstance(cfg.train.lr, float) and isinstance(cfg.train.epochs, int)


def test_name_defaults_to_the_config_file_stem(write_config):
    assert load_config(write_config(MINIMAL, "digits-mlp.yaml")).name == "digits-mlp"
    assert load_config(write_config({**MINIMAL, "name": "mine"}, "x.yaml")).name == "mine"


def test_only_data_train_is_required():
    for raw in ({}, None, {"data": {}}, {"data": None}, {"data": {"train": None}}):
        assert "data.train" in error_of(raw)


def test_early_stopping_block_gets_its_defaults():
    cfg = config_from_dict(with_("train", "early_stopping", {}))
    assert cfg.train.early_stopping == {"patience": 5, "metric": "val_loss", "min_delta": 0.0}


@pytest.mark.parametrize("section,key,value,expected", [
    ("train", "lr", "1e-3", 0.001),         # PyYAML reads 1e-3 as a string
    ("train", "batch_size", "full", "full"),
    ("train", "epochs", 5.0, 5),
    ("model", "hidden", 64, (64,)),
    ("model", "hidden", [128, 64], (128, 64)),
    ("model", "hidden", None, ()),
    ("model", "init", {"normal": 0.01}, {"normal": 0.01}),
    ("train", "lr_schedule", None, "constant"),
    ("loss", "class_weight", "balanced", "balanced"),
    ("loss", "class_weight", {"cat": 2, 3: 0.5}, {"cat": 2.0, "3": 0.5}),
    ("", "name", 2024, "2024"),
])
def test_accepted_spellings(section, key, value, expected):
    cfg = config_from_dict(with_(section, key, value))
    node = cfg if not section else getattr(cfg, section)
    assert getattr(node, key) == expected


def test_image_size_is_width_height_and_an_int_means_square():
    def size(value):
        return config_from_dict({"data": {"train": "imgs", "image": {"size": value}}}
                                ).data.image.size

    assert (size(28), size([32, 16]), size(None)) == ((28, 28), (32, 16), None)


def test_lr_1e_minus_3_in_a_yaml_file_is_a_number(write_config):
    path = write_config("data:\n  train: t.csv\ntrain:\n  lr: 1e-3\nreg:\n  lambda: 5e-4\n")
    assert yaml.safe_load(path.read_text())["train"]["lr"] == "1e-3"  # what PyYAML does
    cfg = load_config(path)
    assert cfg.train.lr == 0.001 and cfg.reg_lambda == 0.0005


# ---------------------------------------------------------------- unknown keys


@pytest.mark.parametrize("raw,named,suggestion", [
    (with_("train", "learning_rate", 0.1), "train.learning_rate", "train.lr"),
    (with_("train", "lambda", 0.1), "train.lambda", "reg.lambda"),
    (with_("", "modle", {}), "modle", "model"),
    (with_("", "weight_decay", 0.1), "weight_decay", "reg.lambda"),
    (with_("model", "activaton", "relu"), "model.activaton", "model.activation"),
    (with_("loss", "typ", "svm"), "loss.typ", "loss.type"),
    (with_("train", "epoch", 3), "train.epoch", "train.epochs"),
    (with_("train", "batchsize", 3), "train.batchsize", "train.batch_size"),
    ({"data": {"train": "t.csv", "image": {"szie": 8}}}, "data.image.szie", "data.image.size"),
    ({"data": {"train": "t.csv", "normalise": "none"}}, "data.normalise", "data.normalize"),
    (with_("train", "lr_schedule", {"step": {"evry": 2}}), "train.lr_schedule.step.evry",
     "train.lr_schedule.step.every"),
    (with_("train", "early_stopping", {"patiense": 2}), "train.early_stopping.patiense",
     "train.early_stopping.patience"),
])
def test_unknown_keys_are_errors_with_a_suggestion(raw, named, suggestion):
    message = error_of(raw)
    assert f"unknown config key '{named}'" in message
    assert f"did you mean '{suggestion}'" in message


def test_unknown_key_without_a_close_match_lists_the_known_keys():
    message = error_of(with_("reg", "zzzz", 1))
    assert "'reg.zzzz'" in message and "did you mean" not in message
    assert "lambda" in message


def test_suggest_key_tries_spelling_initials_other_sections_and_synonyms():
    train_keys = tuple(SCHEMA["train"])
    assert suggest_key("learning_rate", train_keys, "train.") == "train.lr"
    assert suggest_key("lambda", train_keys, "train.") == "reg.lambda"
    assert suggest_key("optimiser", train_keys, "train.") == "train.optimizer"
    assert suggest_key("num_epochs", tuple(SCHEMA), "") == "train.epochs"
    assert suggest_key("qqqq", tuple(SCHEMA), "") is None


# ---------------------------------------------------------------- wrong types and ranges


@pytest.mark.parametrize("section,key,value", [
    ("train", "batch_size", 0),
    ("train", "batch_size", -8),
    ("train", "batch_size", "all"),
    ("train", "batch_size", True),
    ("train", "batch_size", 2.5),
    ("train", "epochs", True),
    ("train", "epochs", 0),
    ("train", "epochs", "ten"),
    ("train", "lr", 0),
    ("train", "lr", -0.01),
    ("train", "lr", "fast"),
    ("train", "lr", True),
    ("train", "lr", float("nan")),
    ("train", "lr", float("inf")),
    ("train", "lr", 10 ** 400),
    ("train", "momentum", 1.0),
    ("train", "momentum", -0.1),
    ("train", "optimizer", "rmsprop"),
    ("train", "dtype", "float16"),
    ("train", "checkpoint_every", 0),
    ("train", "lr_schedule", "linear"),
    ("train", "lr_schedule", {"step": {"every": 0}}),
    ("train", "lr_schedule", {"step": {"gamma": 0}}),
    ("train", "lr_schedule", {"cosine": 1}),
    ("train", "early_stopping", {"patience": 0}),
    ("train", "early_stopping", {"metric": "acc"}),
    ("train", "early_stopping", 5),
    ("reg", "lambda", -0.001),
    ("reg", "lambda", [0.1]),
    ("model", "activation", "softplus"),
    ("model", "activation", 3),
    ("model", "hidden", [64, 0]),
    ("model", "hidden", "64"),
    ("model", "hidden", [True]),
    ("model", "hidden", {"a": 1}),
    ("model", "init", "kaiming"),
    ("model", "init", {"normal": 0}),
    ("model", "init", {"uniform": 0.1}),
    ("loss", "type", "hinge"),
    ("loss", "margin", -1),
    ("loss", "class_weight", "auto"),
    ("loss", "class_weight", {"cat": -1}),
    ("loss", "class_weight", {}),
    ("loss", "class_weight", [1, 2]),
    ("", "seed", -1),
    ("", "seed", 1.5),
    ("", "name", ""),
    ("", "name", ["a"]),
])
def test_bad_values_raise_naming_the_key(section, key, value):
    message = error_of(with_(section, key, value))
    assert f"'{section + '.' if section else ''}{key}" in message


@pytest.mark.parametrize("data,key", [
    ({"train": "t.csv", "val_split": 1.0}, "data.val_split"),
    ({"train": "t.csv", "val_split": -0.1}, "data.val_split"),
    ({"train": "t.csv", "normalize": "zscore"}, "data.normalize"),
    ({"train": "t.csv", "image": {"mode": "CMYK"}}, "data.image.mode"),
    ({"train": "t.csv", "image": {"size": [0, 3]}}, "data.image.size"),
    ({"train": "t.csv", "image": {"size": [1, 2, 3]}}, "data.image.size"),
    ({"train": "t.csv", "image": "big"}, "data.image"),
    ({"train": "t.csv", "label_column": None}, "data.label_column"),
    ({"train": ["a", "b"]}, "data.train"),
    ({"train": True}, "data.train"),
])
def test_bad_data_values_raise_naming_the_key(data, key):
    assert f"'{key}'" in error_of({"data": data})


@pytest.mark.parametrize("raw", [[1, 2], "text", 3, {"data": "t.csv"}, {"train": 1, **MINIMAL}])
def test_sections_must_be_mappings(raw):
    error_of(raw)


def test_activation_loss_optimizer_errors_list_the_known_names():
    assert all(n in error_of(with_("model", "activation", "gelu")) for n in ACTIVATION_NAMES)
    assert all(n in error_of(with_("loss", "type", "ce")) for n in LOSS_NAMES)
    message = error_of(with_("train", "optimizer", "Adam"))
    assert "did you mean 'adam'" in message and all(n in message for n in OPTIMIZER_NAMES)


# ---------------------------------------------------------------- files and YAML


def test_load_config_errors_name_the_file(write_config, tmp_path):
    path = write_config(with_("train", "learning_rate", 0.1), "bad.yaml")
    with pytest.raises(NncliError, match=r"bad\.yaml: unknown config key 'train\.learning_rate'"):
        load_config(path)
    with pytest.raises(NncliError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(NncliError, match="directory"):
        load_config(tmp_path)
    with pytest.raises(NncliError, match="mapping"):
        load_config(write_config("- a\n- b\n", "list.yaml"))


def test_empty_file_only_misses_data_train(write_config):
    with pytest.raises(NncliError, match="data.train"):
        load_config(write_config("# nothing yet\n", "empty.yaml"))


@pytest.mark.parametrize("text,line,column", [
    ("data:\n  train: t.csv\nmodel:\n  hidden: [64, 32\nloss: {}\n", 5, 5),
    ("data:\n  train: t.csv\n   x: 1\n", 3, 5),
    ("data:\n\ttrain: t.csv\n", 2, 1),
    ("seed: 'unterminated\n", 2, 1),
])
def test_malformed_yaml_reports_line_and_column(write_config, text, line, column):
    path = write_config(text, "broken.yaml")
    with pytest.raises(NncliError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid YAML at line {line}, column {column}")
    assert "\n" not in message


@pytest.mark.parametrize("text", ["lr: 2020-13-45", "a: !!float abc", "a: !!int zz",
                                  "a: !!python/object:os.system {}", "a: &x 1\nb: *y\n"])
def test_yaml_values_pyyaml_cannot_construct_are_config_errors(text):
    with pytest.raises(NncliError, match="cfg.yaml"):
        parse_yaml(text, "cfg.yaml")


# ---------------------------------------------------------------- --set overrides


def test_overrides_are_yaml_typed_and_nested():
    raw = apply_overrides(MINIMAL, [
        "train.lr=0.05", "train.batch_size=full", "model.hidden=[64, 32]", "train.epochs=3",
        "train.lr_schedule.step.every=4", "loss.class_weight.cat=2", "data.val=null",
        "name=my run", "reg.lambda=1e-4", "model.init={normal: 0.02}",
    ])
    cfg = config_from_dict(raw)
    assert (cfg.train.lr, cfg.train.batch_size, cfg.model.hidden) == (0.05, "full", (64, 32))
    assert cfg.train.epochs == 3 and cfg.train.lr_schedule == {"step": {"every": 4, "gamma": 0.5}}
    assert cfg.loss.class_weight == {"cat": 2.0} and cfg.data.val is None
    assert cfg.name == "my run" and cfg.reg_lambda == 1e-4
    assert cfg.model.init == {"normal": 0.02}


def test_overrides_do_not_touch_the_input_and_later_ones_win():
    raw = {"data": {"train": "a.csv"}, "train": {"lr": 0.5, "lr_schedule": "cosine"}}
    out = apply_overrides(raw, ["train.lr=0.1", "train.lr=0.2",
                                "train.lr_schedule.step.gamma=0.1"])
    assert raw == {"data": {"train": "a.csv"}, "train": {"lr": 0.5, "lr_schedule": "cosine"}}
    cfg = config_from_dict(out)
    assert cfg.train.lr == 0.2
    assert cfg.train.lr_schedule == {"step": {"every": 10, "gamma": 0.1}}


@pytest.mark.parametrize("item,fragment", [
    ("train.learning_rate=0.1", "did you mean 'train.lr'"),
    ("train.lambda=0.1", "did you mean 'reg.lambda'"),
    ("modle.hidden=[3]", "did you mean 'model'"),
    ("data.image.szie=8", "did you mean 'data.image.size'"),
    ("train.lr", "expected KEY=VALUE"),
    ("=3", "expected KEY=VALUE"),
    ("train..lr=3", "malformed key"),
    ("train.lr=[1, 2", "invalid YAML"),
])
def test_bad_overrides_are_errors(item, fragment):
    with pytest.raises(NncliError, match=fragment.replace("[", r"\[").replace(".", r"\.")):
        apply_overrides(MINIMAL, [item])


def test_override_values_are_validated_like_file_values():
    with pytest.raises(NncliError, match="'train.batch_size'"):
        config_from_dict(apply_overrides(MINIMAL, ["train.batch_size=0"]))
    with pytest.raises(NncliError, match="'train.lr'"):
        config_from_dict(apply_overrides(MINIMAL, ["train.lr="]))


def test_load_config_applies_overrides_over_the_file(write_config):
    path = write_config({**MINIMAL, "train": {"lr": 0.5, "epochs": 2}})
    cfg = load_config(path, ["train.lr=0.05", "seed=7"])
    assert (cfg.train.lr, cfg.train.epochs, cfg.seed) == (0.05, 2, 7)
    with pytest.raises(NncliError, match="did you mean 'train.lr'"):
        load_config(path, ["train.learning_rate=1"])


# ---------------------------------------------------------------- round trips (properties)

schedules = st.one_of(
    st.sampled_from(["constant", "cosine"]),
    st.builds(lambda e, g: {"step": {"every": e, "gamma": g}},
              st.integers(1, 100), st.floats(0.01, 1.0)),
)
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                min_size=1, max_size=12)


@st.composite
def valid_configs(draw) -> dict:
    """Random valid documents, each key present or left to its default."""
    def maybe(strategy):
        return draw(st.one_of(st.just(None), strategy.map(lambda v: [v])))

    doc: dict = {"data": {"train": draw(names)}}
    sections = {
        # a run name is one folder name (see test_run_safety.py)
        ("", "name"): names.filter(lambda s: s not in (".", "..") and not {"/", "\\"} & set(s)),
        ("", "seed"): st.integers(0, 2**63),
        ("data", "val"): st.one_of(st.none(), names),
        ("data", "val_split"): st.floats(0.0, 0.99),
        ("data", "normalize"): st.sampled_from(["none", "scale", "mean", "standard"]),
        ("data", "label_column"): names,
        ("model", "hidden"): st.lists(st.integers(1, 4096), max_size=4),
        ("model", "activation"): st.sampled_from(ACTIVATION_NAMES),
        ("model", "init"): st.one_of(st.sampled_from(["auto", "xavier", "he"]),
                                     st.builds(lambda s: {"normal": s}, st.floats(1e-6, 10))),
        ("loss", "type"): st.sampled_from(LOSS_NAMES),
        ("loss", "margin"): st.floats(0.0, 100.0),
        ("loss", "class_weight"): st.one_of(
            st.none(), st.just("balanced"),
            st.dictionaries(names, st.floats(0.0, 100.0), min_size=1, max_size=3)),
        ("reg", "lambda"): st.floats(0.0, 10.0),
        ("train", "epochs"): st.integers(1, 10**6),
        ("train", "batch_size"): st.one_of(st.just("full"), st.integers(1, 10**6)),
        ("train", "lr"): st.floats(1e-12, 10.0),
        ("train", "optimizer"): st.sampled_from(OPTIMIZER_NAMES),
        ("train", "momentum"): st.floats(0.0, 0.999),
        ("train", "lr_schedule"): schedules,
        ("train", "early_stopping"): st.one_of(st.none(), st.fixed_dictionaries(
            {}, optional={"patience": st.integers(1, 50),
                          "metric": st.sampled_from(["val_loss", "val_acc", "loss"]),
                          "min_delta": st.floats(0.0, 1.0)})),
        ("train", "dtype"): st.sampled_from(["float32", "float64"]),
        ("train", "checkpoint_every"): st.integers(1, 100),
    }
    for (section, key), strategy in sections.items():
        value = maybe(strategy)
        if value is not None:
            (doc.setdefault(section, {}) if section else doc)[key] = value[0]
    size = maybe(st.one_of(st.none(), st.integers(1, 512),
                           st.lists(st.integers(1, 512), min_size=2, max_size=2)))
    if size is not None:
        doc["data"]["image"] = {"size": size[0]}
    return doc


@settings(max_examples=60)
@given(valid_configs())
def test_resolved_config_dumps_to_yaml_that_loads_back_equal(doc):
    cfg = config_from_dict(doc)
    assert isinstance(cfg, Config)
    again = config_from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg
    assert again.to_dict() == cfg.to_dict()


@settings(max_examples=20)
@given(valid_configs())
def test_resolved_config_file_loads_back_equal(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("cfg") / "resolved.yaml"
    cfg = config_from_dict(doc, default_name="resolved")
    path.write_text(cfg.to_yaml(), encoding="utf-8")
    assert load_config(path) == cfg


# ---------------------------------------------------------------- never anything but NncliError

SCHEMA_WORDS = sorted({k for section in SCHEMA.values() if isinstance(section, dict)
                       for k in section} | set(SCHEMA) | {
    "step", "every", "gamma", "normal", "patience", "metric", "min_delta", "size", "mode",
    "full", "balanced", "relu", "softmax", "adam", "cosine", "lambda"})
leaves = st.one_of(
    st.none(), st.booleans(), st.integers(),
    st.sampled_from([0, -1, 1, 2**63, 10**400, -(10**400)]),
    st.floats(), st.text(max_size=6), st.sampled_from(SCHEMA_WORDS), st.binary(max_size=3),
)
keys = st.one_of(st.sampled_from(SCHEMA_WORDS), st.text(max_size=6), st.integers(-2, 2),
                 st.none(), st.booleans())
documents = st.recursive(
    leaves, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                    st.dictionaries(keys, inner, max_size=4)),
    max_leaves=20)


@st.composite
def schema_shaped(draw) -> dict:
    """Documents shaped like the schema (known sections and keys) with random values."""
    doc = {}
    for section, node in SCHEMA.items():
        if not draw(st.booleans()):
            continue
        if isinstance(node, dict):
            doc[section] = draw(st.dictionaries(
                st.one_of(st.sampled_from(sorted(node)), keys), documents, max_size=5))
        else:
            doc[section] = draw(documents)
    return doc


def _only_nncli_errors(raw) -> None:
    try:
        cfg = config_from_dict(raw)
    except NncliError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert config_from_dict(yaml.safe_load(cfg.to_yaml())) == cfg


@settings(max_examples=150)
@given(st.one_of(documents, schema_shaped()))
def test_random_documents_raise_nothing_but_nncli_error(raw):
    _only_nncli_errors(raw)


yaml_alphabet = st.sampled_from(list("abdelnrstu019 .-_:[]{},'\"#&*!|>%@`?\n\t") + [
    "data:", "train:", "  ", "- ", "lr: ", "1e-3", "!!float ", "!!int ", "2020-13-45", "\n  "])


@settings(max_examples=150)
@given(st.lists(yaml_alphabet, max_size=40).map("".join))
def test_random_yaml_text_raises_nothing_but_nncli_error(text):
    try:
        raw = parse_yaml(text, "cfg.yaml")
    except NncliError as exc:
        assert str(exc).startswith("cfg.yaml: invalid YAML")
        return
    _only_nncli_errors(raw)


def test_huge_integers_are_range_errors_not_crashes():
    for key in ("lr", "momentum"):
        assert f"'train.{key}'" in error_of(with_("train", key, 10 ** 400))
    assert "'loss.class_weight.cat'" in error_of(with_("loss", "class_weight",
                                                         {"cat": -(10 ** 400)}))
    assert math.isfinite(config_from_dict(with_("reg", "lambda", 10 ** 300)).reg_lambda)


def test_error_messages_stay_on_one_line_even_for_odd_keys():
    for raw in ({"data": {"train": "t.csv", "a\nb": 1}},
                with_("loss", "class_weight", {"c\tat": -1})):
        message = error_of(raw)
        assert "\n" not in message and "\t" not in message
        assert "a\\nb" in message or "c\\tat" in message
