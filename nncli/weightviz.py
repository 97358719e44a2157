"""What a checkpoint's weights look like (``nncli viz weights``).

On images, each row of a layer-1 weight matrix ``W1`` (H1, D) is a picture of the input's
shape: a linear classifier's row for class k is its "template", the image that scores
highest for k (the lecture's ``Wx + b`` with the image stretched into a column, folded back);
an MLP's rows are its first-layer units. Each template is rescaled to [0, 1] on its own and
the templates are tiled with their names. On tables, each row is drawn as a bar chart of its
largest weights with the inputs' names. A deeper layer (``--layer N``, N > 1) has no input
shape to fold into: its matrix is drawn as a heat map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nncli.checkpoint import Checkpoint, load_checkpoint
from nncli.errors import NncliError
from nncli.inference import data_kind
from nncli.plots import pyplot, save_figure
from nncli.rundir import run_dir_of_checkpoint

WEIGHTS_FILE = "weights.png"
MAX_TILES = 64  # an MLP's first layer can have hundreds of units: the first 64 are drawn
MAX_BAR_PANELS = 12  # table models: one bar chart per class or unit, at most this many
TOP_WEIGHTS = 10  # bars per chart: the inputs with the largest |weight|
TILE_INCHES = 1.3
BAR_PANEL_INCHES = (4.0, 3.0)


@dataclass
class WeightLayout:
    """What :func:`plot_weights` drew: ``kind`` (``templates``, ``bars`` or ``matrix``),
    the name of each tile or panel in order, the ``grid`` (rows, columns) they fill, the
    ``tile_shape`` (H, W, C) of a template, and the picture's ``path``."""

    kind: str
    layer: int
    names: list[str]
    grid: tuple[int, int]
    tile_shape: tuple[int, ...] | None
    path: Path


def row_names(ckpt: Checkpoint, layer: int, count: int) -> list[str]:
    """The names of layer ``layer``'s first ``count`` output units: the class names for the
    score layer (``target`` for a regression model), ``unit i`` (from 1) below it."""
    if layer == ckpt.model.n_layers:
        return list(ckpt.classes)[:count] if ckpt.config.task != "regression" else ["target"]
    return [f"unit {i + 1}" for i in range(count)]


def templates(W: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Rows of ``W`` (K, D), D = H*W*C, as images (K, H, W, C), each rescaled to [0, 1] on
    its own (a constant row is mid-grey)."""
    images = np.asarray(W, dtype=np.float64).reshape((W.shape[0], *input_shape))
    axes = tuple(range(1, images.ndim))
    low, high = images.min(axis=axes, keepdims=True), images.max(axis=axes, keepdims=True)
    span = high - low
    return np.where(span > 0, (images - low) / np.where(span > 0, span, 1.0), 0.5)


def grid_of(count: int) -> tuple[int, int]:
    """(rows, columns) of a near-square grid holding ``count`` tiles (10 -> (2, 5))."""
    columns = math.ceil(math.sqrt(count * 2.5)) if count > 3 else count
    columns = min(columns, count)
    return math.ceil(count / columns), columns


def top_weights(row: np.ndarray, names: list[str], k: int = TOP_WEIGHTS
                ) -> tuple[list[str], np.ndarray]:
    """The ``k`` entries of ``row`` (D,) with the largest magnitude, largest first, and the
    names of their inputs."""
    order = np.argsort(-np.abs(row), kind="stable")[:k]
    return [names[i] for i in order], row[order]


def input_names(ckpt: Checkpoint) -> list[str]:
    """The D inputs' names of a table model (one-hot inputs as ``column=category``), else
    ``x1 ... xD``."""
    if ckpt.encoding is not None:
        return ckpt.encoding.input_names()
    dim = ckpt.model.sizes[0]
    if ckpt.features and len(ckpt.features) == dim:
        return list(ckpt.features)
    return [f"x{i + 1}" for i in range(dim)]


def plot_weights(checkpoint: str | Path, output: str | Path | None = None, layer: int = 1
                 ) -> WeightLayout:
    """Draw layer ``layer``'s weights of ``checkpoint`` into one PNG (default
    ``RUN/weights.png`` of the checkpoint's run): templates tiled with their names for an
    image model's first layer, bar charts of the largest weights for a table's, a heat map
    for a deeper layer. Returns what was drawn (:class:`WeightLayout`)."""
    ckpt = load_checkpoint(checkpoint)
    n_layers = ckpt.model.n_layers
    if not 1 <= layer <= n_layers:
        raise NncliError(f"--layer {layer}: {checkpoint} has layers 1 to {n_layers}")
    path = (Path(output) if output is not None
            else run_dir_of_checkpoint(Path(checkpoint)) / WEIGHTS_FILE)
    W = ckpt.model.params[f"W{layer}"]
    if layer > 1:
        return _draw_matrix(ckpt, W, layer, path)
    if data_kind(ckpt) == "images":
        return _draw_templates(ckpt, W, path)
    return _draw_bars(ckpt, W, path)


def _draw_templates(ckpt: Checkpoint, W: np.ndarray, path: Path) -> WeightLayout:
    """Each of the first :data:`MAX_TILES` rows of ``W`` (K, D) as an image tile."""
    shape = tuple(int(s) for s in ckpt.input_shape)
    count = min(W.shape[0], MAX_TILES)
    images = templates(W[:count], shape)
    names = row_names(ckpt, 1, count)
    rows, columns = grid_of(count)
    plt = pyplot()
    figure, axes = plt.subplots(rows, columns, squeeze=False, dpi=100,
                                figsize=(columns * TILE_INCHES, rows * TILE_INCHES + 0.5))
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < count:
            grey = images.shape[-1] == 1
            ax.imshow(images[i, ..., 0] if grey else images[i], cmap="gray" if grey else None,
                      vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(names[i], fontsize="small")
    what = "class templates" if ckpt.model.n_layers == 1 else "first-layer units"
    shown = "" if count == W.shape[0] else f" (first {count} of {W.shape[0]})"
    figure.suptitle(f"W1 rows as {shape[1]}x{shape[0]} images: {what}{shown}")
    figure.tight_layout()
    save_figure(figure, path)
    return WeightLayout("templates", 1, names, (rows, columns), shape, path)


def _draw_bars(ckpt: Checkpoint, W: np.ndarray, path: Path) -> WeightLayout:
    """One bar chart per row of ``W`` (K, D) (the first :data:`MAX_BAR_PANELS`): its
    :data:`TOP_WEIGHTS` largest weights, named by input."""
    count = min(W.shape[0], MAX_BAR_PANELS)
    names, inputs = row_names(ckpt, 1, count), input_names(ckpt)
    columns = min(count, 4)
    rows = math.ceil(count / columns)
    plt = pyplot()
    width, height = BAR_PANEL_INCHES
    figure, axes = plt.subplots(rows, columns, squeeze=False, dpi=100,
                                figsize=(columns * width, rows * height + 0.5))
    for i, ax in enumerate(axes.flat):
        if i >= count:
            ax.set_axis_off()
            continue
        labels, values = top_weights(np.asarray(W[i], dtype=np.float64), inputs)
        ax.barh(range(len(values))[::-1], values,
                color=["tab:blue" if v >= 0 else "tab:red" for v in values])
        ax.set_yticks(range(len(values))[::-1], labels, fontsize="x-small")
        ax.axvline(0, color="black", linewidth=0.5)
        ax.set_title(names[i], fontsize="small")
        ax.set_xlabel("weight (normalized inputs)", fontsize="x-small")
    figure.suptitle(f"Largest weights of W1 per {'class' if ckpt.model.n_layers == 1 else 'unit'}")
    figure.tight_layout()
    save_figure(figure, path)
    return WeightLayout("bars", 1, names, (rows, columns), None, path)


def _draw_matrix(ckpt: Checkpoint, W: np.ndarray, layer: int, path: Path) -> WeightLayout:
    """Layer ``layer``'s ``W`` (out, in) as a diverging heat map, rows named."""
    names = row_names(ckpt, layer, W.shape[0])
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(8, 6), dpi=100)
    bound = float(np.abs(W).max()) or 1.0
    image = ax.imshow(W, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto",
                      interpolation="nearest")
    figure.colorbar(image, ax=ax)
    if len(names) <= 40:
        ax.set_yticks(range(len(names)), names, fontsize="x-small")
    ax.set(title=f"W{layer}: {W.shape[0]} x {W.shape[1]}", xlabel=f"unit of layer {layer - 1}",
           ylabel="output")
    figure.tight_layout()
    save_figure(figure, path)
    return WeightLayout("matrix", layer, names, (W.shape[0], W.shape[1]), None, path)
