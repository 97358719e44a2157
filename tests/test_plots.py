"""nncli plot, nncli viz weights, nncli viz confusion: one valid PNG each, of the expected
size and not blank; templates tile one per class; no validation curves without validation
data; without matplotlib one Error line naming the install line; matplotlib is never
imported by merely importing the CLI."""

from __future__ import annotations

import ast
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers_data import blobs, cli, config_doc, hide_package, train_run, write_table
from PIL import Image

from nncli import plots
from nncli.plots import curve_panels, read_run, spans_decades
from nncli.weightviz import grid_of, plot_weights, templates, top_weights

# the drawing tests need the plot extra (the test extra installs it); the missing-extra
# and import tests do not
needs_matplotlib = pytest.mark.skipif(
    find_spec("matplotlib") is None, reason="matplotlib is not installed (the plot extra)")

PACKAGE = Path(__file__).resolve().parents[1] / "nncli"


def picture(path: Path) -> np.ndarray:
    """The PNG at ``path`` as pixels (H, W, C); asserts it is a PNG with varied content."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 1.0, f"{path} is blank"
    return pixels


def image_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog", "owl"),
                 shape: tuple[int, int, int] = (6, 5, 3), per_class: int = 6) -> Path:
    """An image folder, one subfolder per class, classes told apart by a bright pixel."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, size=shape, dtype=np.uint8)
            pixels[k % shape[0], k % shape[1]] = 255
            Image.fromarray(pixels.squeeze(-1) if shape[-1] == 1 else pixels).save(
                root / name / f"{i}.png")
    return root


def table_run(tmp_path: Path, **sections: Any) -> Path:
    X, y = blobs(n_per_class=10, n_features=4, n_classes=3)
    data = write_table(tmp_path / "t.csv", X, [f"c{v}" for v in y],
                       header=["alpha", "beta", "gamma", "delta"])
    doc = config_doc(data, train={"epochs": 3, "batch_size": 8, "lr": 0.1}, **sections)
    return train_run(tmp_path / "run", doc)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A linear model trained 3 epochs on a 3-class RGB image folder, 6x5 pixels."""
    root = tmp_path_factory.mktemp("images")
    folder = image_folder(root / "train")
    doc = config_doc(folder, data={"image": {"mode": "RGB"}, "val_split": 0.3},
                     model={"hidden": []}, train={"epochs": 3, "batch_size": 4, "lr": 0.05})
    return train_run(root / "run", doc)


@needs_matplotlib
def test_curves_are_a_png_of_their_size_with_val_curves_when_there_is_val_data(
        image_run: Path) -> None:
    result = cli("plot", image_run)
    assert result.exit_code == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path == image_run / "curves.png"
    assert picture(path).shape == (400, 1200, 3)
    rows, best = read_run(image_run)
    keys = [k for _, _, ks in curve_panels(rows) for k in ks]
    assert "val_loss" in keys and "val_acc" in keys and best is not None


@needs_matplotlib
def test_no_val_curves_without_validation_data_and_rmse_for_regression(tmp_path: Path) -> None:
    run = table_run(tmp_path)
    rows, _ = read_run(run)
    keys = [k for _, _, ks in curve_panels(rows) for k in ks]
    assert keys == ["loss", "data_loss", "reg_loss", "train_acc", "lr"]
    out = tmp_path / "c.png"
    result = cli("plot", run, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{out}\n"
    picture(out)
    regression_rows = [{**r, "train_rmse": 1.0, "val_rmse": None} for r in rows]
    for row in regression_rows:
        del row["train_acc"], row["val_acc"]
    assert [k for _, _, ks in curve_panels(regression_rows) for k in ks] == [
        "loss", "data_loss", "reg_loss", "train_rmse", "lr"]


def test_a_loss_spanning_decades_is_drawn_on_a_log_scale() -> None:
    assert spans_decades(np.array([100.0, 1.0, 0.01]))
    assert not spans_decades(np.array([2.0, 1.0, 0.5]))
    assert not spans_decades(np.array([100.0, 0.0, 0.01]))  # a zero has no log


@needs_matplotlib
def test_a_linear_image_model_has_one_rgb_template_per_class(image_run: Path) -> None:
    layout = plot_weights(image_run / "checkpoints" / "best.npz")
    assert layout.kind == "templates"
    assert layout.names == ["cat", "dog", "owl"]
    assert layout.tile_shape == (6, 5, 3)
    rows, columns = layout.grid
    assert rows * columns >= 3 and (rows - 1) * columns < 3
    assert layout.path == image_run / "weights.png"
    pixels = picture(layout.path)
    assert pixels.shape == (int(100 * (rows * 1.3 + 0.5)), int(100 * columns * 1.3), 3)


def test_templates_are_rescaled_each_on_its_own() -> None:
    W = np.stack([np.arange(12.0), 100 * np.arange(12.0), np.zeros(12)])
    images = templates(W, (2, 2, 3))
    assert images.shape == (3, 2, 2, 3)
    assert images[0].min() == 0 and images[0].max() == 1
    np.testing.assert_allclose(images[0], images[1])
    assert np.all(images[2] == 0.5)
    assert grid_of(10) == (2, 5) and grid_of(1) == (1, 1)


@needs_matplotlib
def test_digits_templates_have_one_tile_per_class_of_the_image_shape(tmp_path: Path) -> None:
    digits = Path(__file__).resolve().parents[1] / "datasets" / "digits" / "test"
    doc = config_doc(digits, model={"hidden": []}, train={"epochs": 1, "batch_size": 64})
    run = train_run(tmp_path / "run", doc)
    result = cli("viz", "weights", run / "checkpoints" / "last.npz", "-o", tmp_path / "w.png")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{tmp_path / 'w.png'}\n"
    layout = plot_weights(run / "checkpoints" / "last.npz", tmp_path / "w2.png")
    assert layout.names == [str(d) for d in range(10)]
    assert layout.tile_shape == (8, 8, 1) and layout.grid == (2, 5)
    picture(layout.path)


@needs_matplotlib
def test_an_mlp_draws_its_units_and_a_deeper_layer_as_a_matrix(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "imgs", shape=(4, 4, 1))
    doc = config_doc(root, data={"image": {"mode": "L"}}, model={"hidden": [70]},
                     train={"epochs": 1, "batch_size": 6})
    run = train_run(tmp_path / "run", doc)
    layout = plot_weights(run / "checkpoints" / "last.npz", tmp_path / "u.png")
    assert layout.kind == "templates" and len(layout.names) == 64  # capped
    assert layout.names[0] == "unit 1" and layout.tile_shape == (4, 4, 1)
    deeper = plot_weights(run / "checkpoints" / "last.npz", tmp_path / "m.png", layer=2)
    assert deeper.kind == "matrix" and deeper.names == ["cat", "dog", "owl"]
    assert picture(deeper.path).shape == (600, 800, 3)
    result = cli("viz", "weights", run / "checkpoints" / "last.npz", "--layer", "3")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --layer 3: ") and "layers 1 to 2" in result.stderr


@needs_matplotlib
def test_a_table_model_draws_its_largest_weights_with_feature_names(tmp_path: Path) -> None:
    run = table_run(tmp_path, model={"hidden": []})
    layout = plot_weights(run / "checkpoints" / "best.npz")
    assert layout.kind == "bars" and layout.names == ["c0", "c1", "c2"]
    assert layout.grid == (1, 3)
    picture(layout.path)
    names, values = top_weights(np.array([0.1, -3.0, 2.0]), ["a", "b", "c"], k=2)
    assert names == ["b", "c"] and values.tolist() == [-3.0, 2.0]


@needs_matplotlib
def test_confusion_counts_and_normalized(tmp_path: Path) -> None:
    run = table_run(tmp_path)
    ckpt = run / "checkpoints" / "best.npz"
    result = cli("viz", "confusion", ckpt, tmp_path / "t.csv")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{run / 'confusion.png'}\n"
    side = int(100 * plots.confusion_size(3))
    assert picture(run / "confusion.png").shape == (side, side, 3)
    matrix, classes = plots.confusion_of_checkpoint(ckpt, tmp_path / "t.csv")
    assert classes == ["c0", "c1", "c2"] and matrix.sum() == 30
    np.testing.assert_allclose(plots.row_normalized(matrix).sum(axis=1), 1.0)
    result = cli("viz", "confusion", ckpt, tmp_path / "t.csv", "--normalize", "-o",
                 tmp_path / "n.png")
    assert result.exit_code == 0, result.stderr
    picture(tmp_path / "n.png")
    assert plots.row_normalized(np.array([[0, 0], [1, 3]])).tolist() == [[0, 0], [0.25, 0.75]]


def test_a_folder_that_holds_no_run_is_one_error(tmp_path: Path) -> None:
    result = cli("plot", tmp_path)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and "no metrics to plot" in result.stderr


@pytest.mark.parametrize("args", [("plot", "RUN"), ("viz", "weights", "CKPT"),
                                  ("viz", "confusion", "CKPT", "DATA")])
def test_without_matplotlib_the_picture_commands_name_the_install_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]) -> None:
    run = table_run(tmp_path)
    hide_package(monkeypatch, "matplotlib")
    places = {"RUN": run, "CKPT": run / "checkpoints" / "best.npz", "DATA": tmp_path / "t.csv"}
    result = cli(*[places.get(a, a) for a in args])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
    assert 'pip install "nncli[plot]"' in result.stderr
    assert not any(p.endswith(".png") for p in map(str, tmp_path.rglob("*")))


def test_importing_the_cli_does_not_import_matplotlib() -> None:
    code = "import sys, nncli.cli; assert 'matplotlib' not in sys.modules, 'imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_matplotlib_is_imported_only_inside_functions() -> None:
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "matplotlib" for n in names), path


@pytest.mark.skipif(find_spec("matplotlib") is None, reason="matplotlib is not installed")
def test_viz_confusion_of_a_regression_model_draws_predicted_against_actual(
        tmp_path: Path) -> None:
    """A regression model has no confusion matrix: its picture is predictions against the
    targets, the same values eval scores (their RMSE is eval's)."""
    import json as json_module

    from test_regression import regression_doc, write_regression_table

    from nncli.plots import predicted_and_actual

    write_regression_table(tmp_path / "train.csv", 80, seed=0)
    actual_targets = write_regression_table(tmp_path / "test.csv", 30, seed=1)
    run = train_run(tmp_path / "run", regression_doc(tmp_path))
    ckpt, test = run / "checkpoints" / "best.npz", tmp_path / "test.csv"
    result = cli("viz", "confusion", ckpt, test)
    assert result.exit_code == 0, result.output
    png = Path(result.stdout.strip())
    with Image.open(png) as image:
        assert image.size == (500, 500)
        assert np.asarray(image.convert("L")).std() > 0
    predicted, actual = predicted_and_actual(ckpt, test)
    np.testing.assert_allclose(actual, actual_targets, rtol=1e-12)
    scored = json_module.loads(cli("eval", ckpt, test, "--json").stdout)
    assert np.sqrt(np.mean((predicted - actual) ** 2)) == pytest.approx(scored["rmse"],
                                                                        rel=1e-9)
