"""The Trainer from Python (its named steps, its TrainState) and the checkpoint's typed
fields on disk (format 1: the same meta keys, in the same order, as always)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers_data import blobs, config_doc, load_npz, write_table, write_yaml

from nncli.checkpoint import (
    META_KEYS,
    Checkpoint,
    ResumeState,
    load_checkpoint,
    save_checkpoint,
)
from nncli.config import load_config
from nncli.rundir import RunDir
from nncli.train import Trainer, TrainState, train


@pytest.fixture
def cfg_path(tmp_path: Path) -> Path:
    """A small table run: 3 classes, validation split, early stopping, class weights."""
    X, y = blobs(n_per_class=8)
    table = write_table(tmp_path / "train.csv", X, np.array(["cat", "dog", "frog"])[y])
    doc = config_doc(table, data={"val_split": 0.25}, model={"hidden": [5]},
                     loss={"class_weight": "balanced"},
                     train={"epochs": 4, "batch_size": 5, "lr": 0.1, "optimizer": "adam",
                            "early_stopping": {"patience": 3, "metric": "val_loss"}})
    return write_yaml(tmp_path / "cfg.yaml", doc)


def params(path: Path) -> dict[str, np.ndarray]:
    return load_checkpoint(path).model.params


def test_the_trainers_steps_driven_by_hand_give_the_run_of_train(
        tmp_path: Path, cfg_path: Path) -> None:
    """A sweep can drive the steps itself (start, then run_epoch and after_epoch per epoch,
    then summarize): the same checkpoints and rows as ``train``."""
    cfg = load_config(cfg_path)
    reference = train(cfg, out=tmp_path / "ref")
    trainer = Trainer(cfg, RunDir(tmp_path / "by-hand"), out=tmp_path / "by-hand")
    trainer.start()
    with np.errstate(all="ignore"):
        while trainer.state.epoch < trainer.last_epoch:
            if trainer.after_epoch(trainer.run_epoch()):
                break
    result = trainer.summarize()
    trainer.run.release()
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in reference.rows]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in result.rows] == strip
    for name in ("last.npz", "best.npz"):
        mine, ref = params(result.run_dir / "checkpoints" / name), params(
            reference.run_dir / "checkpoints" / name)
        assert all(np.array_equal(mine[k], ref[k]) for k in ref)


def test_a_train_state_resumes_where_it_was_saved() -> None:
    """TrainState -> ResumeState -> TrainState keeps the counters, the early-stopping state,
    the rows and the shuffling stream."""
    state = TrainState.begin(seed=7)
    state.rng.permutation(10)  # the stream has moved on
    state.best_value, state.best_epoch, state.wait = 0.5, 1, 1
    state.rows = [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.6}]
    again = TrainState.begin(7, 2, 8, state.resume_state(), state.rows)
    assert (again.epoch, again.step, again.best_value, again.best_epoch, again.wait) == (
        2, 8, 0.5, 1, 1)
    assert again.rows == state.rows and again.rows is not state.rows
    assert again.best_row == {"epoch": 1, "loss": 0.5}
    assert (again.last_saved_epoch, again.best_saved_epoch) == (2, 1)
    assert np.array_equal(again.rng.permutation(10), state.rng.permutation(10))


def test_a_training_checkpoint_has_every_meta_key_in_format_1s_order(
        tmp_path: Path, cfg_path: Path) -> None:
    """What older nncli wrote and reads: the same keys, in :data:`META_KEYS` order."""
    run = train(load_config(cfg_path), out=tmp_path / "run").run_dir
    _, meta = load_npz(run / "checkpoints" / "last.npz")
    assert list(meta) == list(META_KEYS)
    assert meta["data_kind"] == "table" and meta["features"] == ["f0", "f1", "f2", "f3"]
    assert len(meta["class_weights"]) == 3 and len(meta["rows"]) == meta["epoch"]


def test_typed_fields_survive_a_save_and_load(tmp_path: Path, cfg_path: Path) -> None:
    run = train(load_config(cfg_path), out=tmp_path / "run").run_dir
    ckpt = load_checkpoint(run / "checkpoints" / "last.npz")
    save_checkpoint(tmp_path / "again.npz", ckpt)
    again = load_checkpoint(tmp_path / "again.npz")
    assert again.resume == ckpt.resume and again.resume.rows == ckpt.resume.rows
    assert (again.features, again.data_kind) == (ckpt.features, ckpt.data_kind) == (
        ["f0", "f1", "f2", "f3"], "table")
    assert again.class_weights.dtype == np.float64
    assert np.array_equal(again.class_weights, ckpt.class_weights)
    assert load_npz(tmp_path / "again.npz")[1] == load_npz(run / "checkpoints" / "last.npz")[1]


def test_an_older_checkpoint_without_resume_or_data_fields_loads_with_defaults(
        tmp_path: Path, cfg_path: Path) -> None:
    """An early format 1 file (no rng_state, rows, early-stopping state, features,
    data_kind, class_weights) loads; unknown keys are ignored."""
    run = train(load_config(cfg_path), out=tmp_path / "run").run_dir
    arrays, meta = load_npz(run / "checkpoints" / "last.npz")
    for key in ("rng_state", "best_value", "best_epoch", "wait", "rows", "features",
                "data_kind", "class_weights"):
        del meta[key]
    meta["from_the_future"] = {"x": 1}
    np.savez(tmp_path / "old.npz", meta=np.array(json.dumps(meta)), **arrays)
    ckpt = load_checkpoint(tmp_path / "old.npz")
    assert ckpt.resume == ResumeState()
    assert (ckpt.features, ckpt.data_kind, ckpt.class_weights) == (None, None, None)


def test_a_checkpoint_without_resume_state_writes_only_what_old_readers_accept(
        tmp_path: Path) -> None:
    """A hand-made checkpoint (no RNG state, no rows) leaves those keys out, as a
    ``null`` there would be refused."""
    from nncli.config import config_from_dict
    from nncli.data import Normalization
    from nncli.nn.model import MLP

    cfg = config_from_dict({"data": {"train": "t.csv", "normalize": "none"}})
    model = MLP({"W1": np.zeros((2, 3)), "b1": np.zeros(2)}, "relu")
    save_checkpoint(tmp_path / "hand.npz", Checkpoint(
        model=model, config=cfg, classes=["a", "b"], input_shape=(3,),
        normalization=Normalization("none")))
    _, meta = load_npz(tmp_path / "hand.npz")
    assert "rng_state" not in meta and "rows" not in meta
    assert list(meta) == [k for k in META_KEYS if k not in ("rng_state", "rows")]
    assert load_checkpoint(tmp_path / "hand.npz").resume == ResumeState()
