"""One place per config key: a key added to ``SCHEMA`` alone gets its default, its check,
its attribute, its ``--set`` path, its "did you mean" and its line of the YAML dump."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from test_config import MINIMAL, SPEC_DEFAULTS, error_of, valid_configs

from nncli.config import (
    SCHEMA,
    Config,
    DataConfig,
    Field,
    apply_overrides,
    choice,
    config_from_dict,
    integer,
    number,
)


@pytest.fixture
def warmup(monkeypatch: pytest.MonkeyPatch) -> None:
    """``train.warmup_epochs``, added the way a new key is added: one entry in SCHEMA."""
    monkeypatch.setitem(SCHEMA["train"], "warmup_epochs", Field(0, integer(minimum=0)))


def test_a_new_key_has_its_default_as_an_attribute_and_in_the_dump(warmup: None) -> None:
    cfg = config_from_dict(MINIMAL)
    assert cfg.train.warmup_epochs == 0
    assert list(cfg.to_dict()["train"]) == [*SPEC_DEFAULTS["train"], "warmup_epochs"]
    assert cfg.to_dict()["train"]["warmup_epochs"] == 0


def test_a_new_key_is_read_checked_overridden_and_round_trips(warmup: None) -> None:
    cfg = config_from_dict({**MINIMAL, "train": {"warmup_epochs": 3.0}})
    assert cfg.train.warmup_epochs == 3 and isinstance(cfg.train.warmup_epochs, int)
    assert config_from_dict(yaml.safe_load(cfg.to_yaml())) == cfg
    assert error_of({**MINIMAL, "train": {"warmup_epochs": -1}}) == (
        "config key 'train.warmup_epochs': must be >= 0, got -1")
    assert config_from_dict(apply_overrides(MINIMAL, ["train.warmup_epochs=2"])
                            ).train.warmup_epochs == 2
    assert "did you mean 'train.warmup_epochs'" in error_of(
        {**MINIMAL, "train": {"warmup_epoch": 2}})


def test_a_new_section_is_an_object_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SCHEMA, "trace", {"every": Field(10, integer(minimum=1)),
                                          "what": Field("loss", choice(("loss", "grad")))})
    cfg = config_from_dict({**MINIMAL, "trace": {"what": "grad"}})
    assert (cfg.trace.every, cfg.trace.what) == (10, "grad")
    assert type(cfg.trace).__name__ == "TraceConfig"
    assert cfg.to_dict()["trace"] == {"every": 10, "what": "grad"}
    assert "unknown value 'gard' — did you mean 'grad'?" in error_of(
        {**MINIMAL, "trace": {"what": "gard"}})


def test_a_key_whose_name_is_no_attribute_names_its_attribute(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``reg.lambda`` is ``cfg.reg_lambda``; a second such key beside it works the same."""
    monkeypatch.setitem(SCHEMA["reg"], "l1", Field(0.0, number(minimum=0.0), attribute="reg_l1"))
    cfg = config_from_dict({**MINIMAL, "reg": {"lambda": 0.5, "l1": "1e-3"}})
    assert (cfg.reg_lambda, cfg.reg_l1) == (0.5, 0.001)
    assert not hasattr(cfg, "reg")
    assert cfg.to_dict()["reg"] == {"lambda": 0.5, "l1": 0.001}


def test_the_schema_comes_back_when_the_key_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setitem(SCHEMA["model"], "dropout", Field(0.0, number(minimum=0.0)))
        assert config_from_dict(MINIMAL).model.dropout == 0.0
    cfg = config_from_dict(MINIMAL)
    assert type(cfg) is Config and type(cfg.data) is DataConfig
    assert not hasattr(cfg.model, "dropout") and cfg.to_dict() == SPEC_DEFAULTS


def test_the_config_folder_is_no_key_compared_or_dumped() -> None:
    here, there = (config_from_dict(MINIMAL, config_dir=d) for d in ("a", "b"))
    assert here == there and here.data.config_dir == "a"
    assert "config_dir" not in here.to_yaml()


def _attribute_of(cfg: Config, key: str):
    """The value at dotted ``key`` read through the attributes (reg.lambda as reg_lambda)."""
    if key == "reg.lambda":
        return cfg.reg_lambda
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _leaves(doc: dict, prefix: str = "") -> dict:
    out = {}
    for name, value in doc.items():
        node = SCHEMA
        for part in (prefix + name).split("."):
            node = node[part]
        if isinstance(node, dict):
            out.update(_leaves(value, f"{prefix}{name}."))
        else:
            out[prefix + name] = value
    return out


@settings(max_examples=60)
@given(valid_configs())
def test_every_dumped_key_is_the_attribute_that_holds_it(doc: dict) -> None:
    cfg = config_from_dict(doc)
    dumped = _leaves(cfg.to_dict())
    assert list(dumped) == list(_leaves(SPEC_DEFAULTS))
    for key, value in dumped.items():
        held = _attribute_of(cfg, key)
        assert value == (list(held) if isinstance(held, tuple) else held), key
