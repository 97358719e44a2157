"""Hostile inputs for task: regression, through the real CLI: each is refused with exit
code 2 and one ``Error:`` line naming the culprit, without a traceback, and no file that
was there before (a finished regression run and its checkpoints) changes; a refused
``train`` creates no run directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from nncli.cli import main

Case = Callable[[Path], tuple[list[str], str]]


def invoke(*args: Any, input: str | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def table(path: Path, rows: list[str], header: str = "x1,x2,y") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def config(root: Path, name: str = "hostile.yaml", source: Path | None = None,
           **sections: Any) -> Path:
    doc: dict[str, Any] = {"task": "regression",
                           "data": {"train": str(source or root / "train.csv"),
                                    "label_column": "y"},
                           "train": {"epochs": 2, "batch_size": 8}}
    for key, value in sections.items():
        doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
    path = root / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train.csv`` (x1, x2 -> y, 24 rows), ``reg.yaml`` and ``run/``, a finished 2-epoch
    regression run."""
    root = tmp_path_factory.mktemp("regression-base")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 2))
    y = X @ np.array([3.0, -1.0]) + 10.0
    table(root / "train.csv", [f"{a},{b},{t}" for (a, b), t in zip(X.tolist(), y.tolist())])
    result = invoke("train", config(root, "reg.yaml"), "--out", root / "run", "--quiet")
    assert result.exit_code == 0, result.output
    return root


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def string_target(root: Path) -> tuple[list[str], str]:
    bad = table(root / "words.csv", ["1.0,2.0,3.5", "0.5,1.5,high", "2.0,0.1,4.0"])
    return ["train", config(root, source=bad), "--out", root / "new-run"], \
        "line 3: the target 'high' in column"


def softmax_loss(root: Path) -> tuple[list[str], str]:
    return ["train", config(root, loss={"type": "softmax"}), "--out", root / "new-run"], \
        "config key 'loss.type': task: regression needs mse"


def val_acc_metric(root: Path) -> tuple[list[str], str]:
    cfg = config(root, data={"val_split": 0.25},
                 train={"early_stopping": {"patience": 2, "metric": "val_acc"}})
    return ["train", cfg, "--out", root / "new-run"], \
        "config key 'train.early_stopping.metric': val_acc is a classifier's"


def class_weight(root: Path) -> tuple[list[str], str]:
    return ["train", config(root, loss={"class_weight": "balanced"}), "--out",
            root / "new-run"], "config key 'loss.class_weight': task: regression has no classes"


def top_k(root: Path) -> tuple[list[str], str]:
    return ["predict", root / "run" / "checkpoints" / "best.npz", "--top-k", "2", "1.0,2.0"], \
        "--top-k: "


def gradcheck_softmax(root: Path) -> tuple[list[str], str]:
    return ["gradcheck", config(root, loss={"type": "svm"})], "needs mse"


def eval_string_target(root: Path) -> tuple[list[str], str]:
    bad = table(root / "words.csv", ["1.0,2.0,3.5", "0.5,1.5,n/a!"])
    return ["eval", root / "run" / "checkpoints" / "best.npz", bad], \
        "line 3: the target 'n/a!' in column"


def resume_as_classifier(root: Path) -> tuple[list[str], str]:
    cfg = config(root, task="classification", train={"epochs": 4})
    return ["train", cfg, "--resume", root / "run", "--quiet"], "task regression vs " \
        "classification"


CASES: dict[str, Case] = {
    "string target": string_target,
    "softmax loss": softmax_loss,
    "val_acc metric": val_acc_metric,
    "class_weight": class_weight,
    "--top-k": top_k,
    "gradcheck with svm": gradcheck_softmax,
    "eval with a string target": eval_string_target,
    "resume as a classifier": resume_as_classifier,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_regression_input_is_one_error_line(name: str, base: Path,
                                                    tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "case"
    shutil.copytree(base, root)
    # the copied run's checkpoints name their run folder by path: rewrite nothing, the
    # CLI resolves the run from the checkpoint's location
    args, expected = CASES[name](root)
    before = snapshot(root)
    result = invoke(*args)
    assert result.exit_code == 2, (name, result.output)
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and expected in errors[0], (name, result.stderr)
    assert "Traceback" not in result.output
    assert not (root / "new-run").exists()
    after = snapshot(root)
    assert {k: v for k, v in after.items() if k in before} == before
