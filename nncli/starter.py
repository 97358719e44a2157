"""Starter configs for a data source (``nncli init DATA``): commented YAML that trains as is.

:func:`starter_config` looks at DATA with the readers training uses and returns the text
of a config; :func:`write_config_file` writes it (atomically, never over an existing file
unless told to). Nothing here prints: notes go to the ``nncli`` logger.

Choices, for a baseline that trains out of the box:

- The data is read exactly as training will read it (:func:`nncli.data.load_training_data`
  on the config's own data section), so an unreadable file, a column mixing numbers and
  text, a single class or a float32 overflow is the same one-line error now, not at
  ``train``. A table with columns that are not all numbers gets ``data.columns`` with
  every column's inferred type written out; a category column whose values nearly all
  differ (an identifier: a name, a date string) is written as ``ignore``.
  For an image folder that decodes every image once, into the image cache that ``train``
  then reads.
- Paths are written as typed (``Path(DATA)``): relative paths in a config are relative to
  the directory nncli runs in, as on the command line, so a config written from a project
  root stays valid for anyone running from that root (and in version control).
- Tables: the label column is ``--label-column`` if given, else the first header name, in
  the order of ``LABEL_NAMES``, that matches case-insensitively (label, target, class, y,
  species, ...), else the only column with non-numeric values (judged on the first
  ``SNIFF_ROWS`` rows), else the last column. The comment says which rule chose it. A
  label column with more than ``MANY_CLASSES`` distinct values, over half the rows, looks
  like a regression target: a comment and a warning say so.
- Image folders: every image's header (Pillow's ``Image.open`` reads no pixels) gives its
  size, EXIF orientation and mode. ``mode`` is ``RGB`` when any image is colour (an RGB,
  CMYK, ... image, or a palette with a non-grey colour), else ``L``. ``size`` stays
  ``null`` when all images share one size of at most ``KEEP_MAX_SIDE`` pixels a side;
  otherwise (mixed sizes, or large images) it is the median width and height, scaled down
  to at most ``RESIZE_MAX_SIDE`` a side: an MLP on raw pixels gains little from more, and
  its first layer grows with every pixel.
- ``val_split: 0.2`` (stratified, so that early stopping has a validation loss) when there
  are at least ``VAL_MIN_EXAMPLES`` examples; then ``early_stopping: {patience: 10, metric:
  val_loss}`` and ``best.npz`` is the epoch with the lowest validation loss.
- Model: one hidden layer (64 units for tables, 128 for images, relu, He init) from
  ``MLP_MIN_EXAMPLES`` examples on; below that a linear softmax classifier: its loss is
  convex, and a hidden layer would have far more weights than the data has numbers.
  ``reg.lambda: 1e-4``, a light L2 penalty.
- Training: adam at lr 0.003 with a cosine schedule over ``EPOCHS`` epochs, batch 32
  under 1,000 training examples else 64. The schedule anneals the step to 0 by the last
  epoch, so a run that is not stopped early still ends converged (no "may not have
  converged" warning); the start above adam's usual 0.001 makes up for the decay. On the
  bundled datasets (seeds 0-3) that came within a point of the test accuracy of a
  constant 0.001 over 200 epochs, which warned on every digits run, in half the epochs
  or fewer. Tiny data (the linear model) takes full-batch steps at a constant lr
  0.1: that converges a convex model on standardized features within ``EPOCHS``, where
  one-step epochs at 0.001 would need thousands (each writing a checkpoint). Every train
  key that matters is written out, whatever the defaults are.
- A sibling test source (the DATA path with ``train`` replaced by ``test``, e.g.
  ``train.csv`` -> ``test.csv``, ``digits/train`` -> ``digits/test``) becomes
  ``data.test`` when it reads with the training data's classes and shape; otherwise it is
  a commented-out line saying why.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from nncli.config import config_from_dict
from nncli.data import (
    DEFAULT_NA_VALUES,
    TABLE_SUFFIXES,
    TrainingData,
    is_number,
    load_training_data,
    make_dataset,
    na_set,
    read_source,
    reader_config,
    source_kind,
)
from nncli.data.encoding import looks_like_identifier
from nncli.errors import NncliError

log = logging.getLogger("nncli")
MISSING_MARKERS = na_set(DEFAULT_NA_VALUES)  # a cell that is no label: missing

LABEL_NAMES = ("label", "labels", "target", "class", "y", "species", "category", "outcome",
               "diagnosis")
SNIFF_ROWS = 200  # rows read to find the one non-numeric column
MANY_CLASSES = 20  # more distinct labels than this, and over half the rows: a regression?
KEEP_MAX_SIDE = 64  # images no larger than this on a side keep their own size ...
RESIZE_MAX_SIDE = 32  # ... others are resized to at most this on a side
VAL_MIN_EXAMPLES = 20
VAL_SPLIT = 0.2
MLP_MIN_EXAMPLES = 100
EPOCHS = 100
LR, TINY_LR = 0.003, 0.1  # adam's step (cosine-annealed), and full-batch on tiny data
COMMENT_COLUMN = 36
WRAP = 88  # comment lines of their own are wrapped at this width
GREY_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}


@dataclass
class _Entry:
    """One line of the config: ``key: value  # comment`` (``key`` dotted, e.g.
    ``data.image.size``), or a comment line alone inside section ``at``."""

    key: str | None
    value: Any = None
    comment: str = ""
    at: str = ""
    wrap: bool = True  # a comment line alone is wrapped at WRAP (not a commented-out key)


def _clean(text: str) -> str:
    """A comment fragment on one line (class names and paths may hold anything)."""
    return text if text.isprintable() else repr(text)[1:-1]


def _flow(value: Any) -> str:
    """A value as one line of YAML (flow style; quoted when it must be)."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1 << 30,
                          sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _render(head: Sequence[str], entries: Sequence[_Entry]) -> str:
    """The YAML text of ``entries`` (sections opened as their keys first appear)."""
    lines = [f"# {_clean(line)}" if line else "#" for line in head]
    opened: list[str] = []
    for entry in entries:
        path = entry.key.split(".") if entry.key else entry.at.split(".") if entry.at else []
        parents = path[:-1] if entry.key else path
        depth = 0
        while depth < len(opened) and depth < len(parents) and opened[depth] == parents[depth]:
            depth += 1
        del opened[depth:]
        for name in parents[depth:]:
            lines.append(f"{'  ' * len(opened)}{name}:")
            opened.append(name)
        indent = "  " * len(opened)
        if entry.key is None and not entry.wrap:
            lines.append(_clean(f"{indent}# {entry.comment}"))
            continue
        if entry.key is None:
            wrapped = textwrap.wrap(entry.comment, WRAP, initial_indent=f"{indent}# ",
                                    subsequent_indent=f"{indent}#   ", break_on_hyphens=False,
                                    break_long_words=False)
            lines += [_clean(line.replace("\u00a0", " ")) for line in wrapped]
            continue
        text = f"{indent}{path[-1]}: {_flow(entry.value)}"
        if entry.comment:
            text = f"{text.ljust(COMMENT_COLUMN - 1)} # {_clean(entry.comment)}"
        lines.append(text)
    return "\n".join(lines) + "\n"


def _doc(entries: Sequence[_Entry]) -> dict[str, Any]:
    """The parsed document ``entries`` stand for."""
    doc: dict[str, Any] = {}
    for entry in entries:
        if entry.key is None:
            continue
        *parents, name = entry.key.split(".")
        node = doc
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = entry.value
    return doc


def _counted(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _class_list(classes: Sequence[str], counts: Sequence[int], unit: str) -> str:
    # No-break spaces inside an item, so that wrapping (see _render) never splits one.
    shown = ", ".join(f"{name}\u00a0({count:,})" for name, count in zip(classes[:10], counts))
    more = f", ... ({len(classes) - 10} more)" if len(classes) > 10 else ""
    return f"{len(classes)} classes ({unit} each): {shown}{more}"


# ---------------------------------------------------------------- tables


def _header_and_sample(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header (stripped names) and the first ``SNIFF_ROWS`` rows of a table."""
    delimiter = TABLE_SUFFIXES[path.suffix.lower()]
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            header = [name.strip() for name in next(reader, [])]
            sample = [row for _, row in zip(range(SNIFF_ROWS), reader)]
    except UnicodeDecodeError:
        raise NncliError(f"{path}: not a UTF-8 text table") from None
    except csv.Error as exc:
        raise NncliError(f"{path}: cannot parse the table ({exc})") from None
    except OSError as exc:
        raise NncliError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not any(header):
        raise NncliError(f"{path}: empty table (expected a header line)")
    return header, sample


def guess_label_column(header: Sequence[str], sample: Sequence[Sequence[str]]
                       ) -> tuple[str, str]:
    """(label column, why): a name from ``LABEL_NAMES`` (case-insensitive, in that order),
    else the only column holding a non-numeric value in ``sample``, else the last one."""
    by_name: dict[str, str] = {}
    for name in header:
        by_name.setdefault(name.lower(), name)
    for wanted in LABEL_NAMES:
        if wanted in by_name:
            return by_name[wanted], "named like a label column"
    text_columns = [name for j, name in enumerate(header)
                    if any(j < len(row) and row[j].strip() not in MISSING_MARKERS
                           and not is_number(row[j]) for row in sample)]
    if len(text_columns) == 1:
        return text_columns[0], "the only column that is not numeric"
    return header[-1], "the last column"


def _table_hint(label_column: str, why: str) -> str:
    """What to add to a table's read error: how the label column was chosen when it was
    only a guess."""
    if why in ("the last column", "the only column that is not numeric"):
        return (f" (the label column was taken to be '{label_column}' ({why}); name "
                f"another with --label-column)")
    return ""


def _columns_entries(entries: list[_Entry], data: TrainingData
                     ) -> tuple[list[_Entry], TrainingData]:
    """``data.columns`` for a table with columns that are not numbers: every column's
    inferred type, an identifier-like column (nearly every value distinct) ``ignore``d;
    the data read again with them when one is. Nothing for a table of numbers."""
    encoding = data.encoding
    if encoding is None or all(c.type == "number" for c in encoding.columns):
        return [], data
    n = data.train.X.shape[0]
    names = [c.name for c in encoding.columns
             if c.type == "category" and looks_like_identifier(len(c.categories), n)]
    columns = {c.name: "ignore" if c.name in names else c.type for c in encoding.columns}
    columns.update(dict.fromkeys(encoding.ignored, "ignore"))
    why = "each column's type, inferred from its values: number | category | ignore"
    if names:
        why += (f"; {', '.join(names)}: ignored, as nearly every value differs (an "
                f"identifier?)")
    added = [_Entry(None, comment=why, at="data"), _Entry("data.columns", columns)]
    if names:
        data = _load([*entries, *added])
    return added, data


def _table_entries(path: Path, label_column: str | None
                   ) -> tuple[list[_Entry], TrainingData, str]:
    header, sample = _header_and_sample(path)
    if label_column is not None:
        if label_column not in header:
            shown = ", ".join(header[:12]) + (", ..." if len(header) > 12 else "")
            raise NncliError(f"{path}: no column '{label_column}' in the header (columns: "
                             f"{shown})")
        why = "as asked (--label-column)"
    else:
        label_column, why = guess_label_column(header, sample)
    entries = [_Entry("data.train", str(path)), _Entry("data.label_column", label_column)]
    try:
        data = _load(entries)
    except NncliError as exc:
        raise NncliError(f"{exc}{_table_hint(label_column, why)}") from None
    added, data = _columns_entries(entries, data)
    entries[0].comment = f"a table: {_counted(data.train.X.shape[0], 'row')}, " + (
        _counted(data.train.X.shape[1], "numeric feature") if not added else
        f"{_counted(len(data.encoding.columns), 'column')} -> "
        f"{_counted(data.train.X.shape[1], 'input')}"
        + (" (one-hot categories)" if any(c.type == "category" for c in data.encoding.columns)
           else ""))
    entries[1].comment = why
    entries += added
    counts = np.bincount(data.train.y, minlength=len(data.classes)).tolist()
    entries.append(_Entry(None, comment=_class_list(data.classes, counts, "rows"), at="data"))
    if len(data.classes) > MANY_CLASSES and len(data.classes) > data.train.X.shape[0] / 2:
        note = (f"'{label_column}' has {len(data.classes):,} distinct values in "
                f"{data.train.X.shape[0]:,} rows: is it really a class label?")
        log.warning("%s: %s", path, note)
        entries.append(_Entry(None, comment=f"note: {note}", at="data"))
    return entries, data, "rows"


# ---------------------------------------------------------------- image folders


def _palette_is_grey(im: Any) -> bool:
    """True when a palette image's colours are all greys (R = G = B)."""
    palette = getattr(im, "palette", None)
    step = {None: 3, "RGB": 3, "RGBA": 4, "RGBX": 4}.get(getattr(palette, "rawmode", "?"))
    if palette is None or step is None:
        return False
    values = np.frombuffer(bytes(palette.palette), dtype=np.uint8)
    values = values[: len(values) // step * step].reshape(-1, step)
    return bool((values[:, 0] == values[:, 1]).all() and (values[:, 1] == values[:, 2]).all())


def _image_header(path: str) -> tuple[int, int, bool] | None:
    """(width, height, colour) of an image as it will be decoded (EXIF orientation
    applied), from its header alone; None when Pillow cannot open it (the full read
    afterwards reports it)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = im.getexif().get(0x0112, 1) if "exif" in im.info else 1
            if im.mode in ("P", "PA"):
                colour = not _palette_is_grey(im)
            else:
                colour = im.mode not in GREY_MODES
    except Exception:  # noqa: BLE001 - Pillow raises many types for bad files
        return None
    if orientation in (5, 6, 7, 8):  # a quarter turn: the decoded image is transposed
        width, height = height, width
    return width, height, colour


def _resized(width: float, height: float) -> list[int]:
    """[w, h] scaled down (never up) to at most RESIZE_MAX_SIDE a side."""
    scale = min(1.0, RESIZE_MAX_SIDE / max(width, height))
    return [max(1, round(width * scale)), max(1, round(height * scale))]


def _folder_entries(path: Path) -> tuple[list[_Entry], TrainingData, str]:
    from nncli.data.folders import list_folder
    from nncli.data.images import _image_files

    per_class, _, _ = _image_files(path, list_folder(path))
    headers = [h for images in per_class for rel in images
               if (h := _image_header(os.path.join(path, rel))) is not None]
    sizes = {(w, h) for w, h, _ in headers}
    colour = any(c for _, _, c in headers)
    if len(sizes) == 1 and max(next(iter(sizes))) <= KEEP_MAX_SIDE:
        [(w, h)] = sizes
        size, why = None, f"every image is {w}x{h} (width x height): used as is"
    elif len(sizes) == 1:
        [(w, h)] = sizes
        size = _resized(w, h)
        why = (f"every image is {w}x{h}; resized for the MLP (null keeps "
               f"{w}x{h}, D = {w * h * (3 if colour else 1):,})")
    elif sizes:
        widths, heights = (np.array([s[i] for s in headers]) for i in (0, 1))
        mid_w, mid_h = float(np.median(widths)), float(np.median(heights))
        size = _resized(mid_w, mid_h)
        why = (f"sizes differ ({widths.min()}-{widths.max()} x {heights.min()}-"
               f"{heights.max()}); all are resized to the median {mid_w:g}x{mid_h:g}, "
               f"at most {RESIZE_MAX_SIDE} a side")
    else:  # no header could be read: the full read below names the first bad file
        size, why = None, ""
    mode = "RGB" if colour else "L"
    entries = [_Entry("data.train", str(path)),
               _Entry("data.image.size", size, why),
               _Entry("data.image.mode", mode, "some images are in colour" if colour
                      else "every image is greyscale")]
    data = _load(entries)
    h, w, c = data.input_shape
    entries[0].comment = (f"an image folder: {_counted(data.train.X.shape[0], 'image')}, "
                          f"each {w}x{h}x{c} -> D = {w * h * c:,}")
    counts = np.bincount(data.train.y, minlength=len(data.classes)).tolist()
    entries.insert(1, _Entry(None, comment=_class_list(data.classes, counts, "images"),
                             at="data"))
    return entries, data, "images"


def _array_entries(path: Path) -> tuple[list[_Entry], TrainingData, str]:
    entries = [_Entry("data.train", str(path))]
    data = _load(entries)
    entries[0].comment = (f"arrays: {_counted(data.train.X.shape[0], 'example')} of shape "
                          f"{tuple(data.input_shape)}")
    counts = np.bincount(data.train.y, minlength=len(data.classes)).tolist()
    entries.append(_Entry(None, comment=_class_list(data.classes, counts, "examples"),
                          at="data"))
    return entries, data, "examples"


# ---------------------------------------------------------------- the whole config


def _load(entries: Sequence[_Entry]) -> TrainingData:
    """The training data as ``train`` will read it (no split yet)."""
    return load_training_data(config_from_dict(_doc(entries)), splits=("train",))


def _sibling_test(path: Path, data: TrainingData, entries: Sequence[_Entry]) -> list[_Entry]:
    """``data.test`` for a test source next to ``path`` (train -> test in its name), or a
    commented-out ``test:`` line and why it is not used; nothing when there is none."""
    if "train" not in path.name.lower():
        return []
    name = path.name.replace("train", "test").replace("Train", "Test").replace("TRAIN", "TEST")
    test = path.with_name(name)
    if name == path.name or not test.exists() or test.is_dir() != path.is_dir():
        return []
    cfg = config_from_dict(_doc(entries))
    try:
        make_dataset(read_source(test, reader_config(cfg.data, data.encoding)), data.classes,
                     data.normalization, cfg.train.dtype, "test", data.input_shape,
                     data.features, data.encoding)
    except NncliError as exc:
        return [_Entry(None, comment=f"not used as data.test: {exc}", at="data"),
                _Entry(None, comment=f"test: {_flow(str(test))}", at="data", wrap=False)]
    return [_Entry("data.test", str(test), "found next to data.train; best.npz is scored on it")]


def _source_entries(path: Path, label_column: str | None
                    ) -> tuple[list[_Entry], TrainingData, str]:
    """The data section's first entries for the source at ``path``, the data as training
    reads it, and the unit of its examples (rows, images, examples)."""
    if not path.exists():
        raise NncliError(f"{path}: no such file or folder")
    kind = source_kind(path)
    if label_column is not None and kind != "table":
        raise NncliError(f"{path}: --label-column is for tables (.csv/.tsv), not "
                         f"{'an image folder' if kind == 'folder' else 'an .npz'}")
    if kind == "table":
        return _table_entries(path, label_column)
    if kind == "folder":
        return _folder_entries(path)
    return _array_entries(path)


def _model_entries(n: int, unit: str) -> list[_Entry]:
    """A linear classifier under MLP_MIN_EXAMPLES examples, else one hidden layer; the loss
    and a light L2 penalty."""
    width = 128 if unit == "images" else 64
    if n < MLP_MIN_EXAMPLES:
        entries = [_Entry("model.hidden", [], f"a linear classifier: only "
                                                f"{_counted(n, unit[:-1])}; [{width}] adds a "
                                                f"hidden layer")]
    else:
        entries = [_Entry("model.hidden", [width], "one hidden layer; [] is a linear classifier"),
                   _Entry("model.activation", "relu")]
    return [*entries,
            _Entry("loss.type", "softmax", "cross-entropy; svm is the multiclass hinge loss"),
            _Entry("reg.lambda", 0.0001, "L2 penalty lambda * sum of W^2")]


def _train_entries(n: int, validate: bool) -> list[_Entry]:
    """The train section for ``n`` examples (a fifth held out when ``validate``)."""
    tiny = n < MLP_MIN_EXAMPLES
    n_train = n - (int(round(VAL_SPLIT * n)) if validate else 0)
    batch: int | str = "full" if tiny else 32 if n_train < 1000 else 64
    steps = 1 if batch == "full" else math.ceil(n_train / int(batch))
    return [
        _Entry("train.optimizer", "adam"),
        _Entry("train.lr", TINY_LR if tiny else LR,
               "full-batch steps on a convex loss" if tiny else "the first epoch's step"),
        _Entry("train.lr_schedule", "constant" if tiny else "cosine",
               "" if tiny else "lr * (1 + cos(pi * (epoch - 1) / epochs)) / 2, down to ~0"),
        _Entry("train.batch_size", batch, f"{steps} update{'s' if steps > 1 else ''} per "
                                          f"epoch"),
        _Entry("train.epochs", EPOCHS, "early stopping may end the run sooner"
               if validate else f"{EPOCHS * steps:,} updates in all"),
        _Entry("train.early_stopping", {"patience": 10, "metric": "val_loss"} if validate
               else None, "stop after 10 epochs without a lower val_loss" if validate
               else "no validation data to stop on"),
        _Entry("train.dtype", "float32"),
    ]


def starter_config(data: str | Path, label_column: str | None = None) -> str:
    """The YAML text of a commented starter config training a classifier on ``data`` (an
    image folder, a .csv/.tsv table or an .npz); see the module docstring for the choices.

    ``label_column`` names a table's label column (default: guessed). Raises
    :class:`NncliError` (naming the file) when the data cannot be trained on as it is.
    """
    path = Path(data)
    entries, loaded, unit = _source_entries(path, label_column)
    n = loaded.train.X.shape[0]
    validate = n >= VAL_MIN_EXAMPLES and np.bincount(loaded.train.y).max() >= 2
    entries += _sibling_test(path, loaded, entries)
    if validate:
        entries.append(_Entry("data.val_split", VAL_SPLIT,
                              "held out per class, to validate and stop early"))
    entries.append(_Entry("data.normalize", "standard",
                          "mean 0, std 1 per feature (learned on the training part)"))
    entries += _model_entries(n, unit) + _train_entries(n, validate)
    head = [f"Starter config for {path}, written by `nncli init`; edit freely.",
            "Train it with `nncli train THIS_FILE`. Paths are relative to the directory",
            "nncli runs in; keys left out take their defaults (README, Config reference).",
            ""]
    entries.insert(0, _Entry("seed", 0, "seeds initialization, shuffling and val_split"))
    text = _render(head, entries)
    config_from_dict(yaml.safe_load(text))  # the text is a valid config (cannot fail)
    return text


def check_output(path: str | Path, force: bool = False) -> None:
    """Refuse ``path`` as the config's file when it is a folder, or exists and not ``force``."""
    path = Path(path)
    if path.is_dir():
        raise NncliError(f"{path}: is a folder, expected a file name for the config")
    if os.path.lexists(path) and not force:
        raise NncliError(f"{path}: already exists (use --force to overwrite it)")


def write_config_file(path: str | Path, text: str, force: bool = False) -> None:
    """Write ``text`` to ``path`` atomically (temp file + rename: never half-written); an
    existing ``path`` is an error unless ``force`` (see :func:`check_output`)."""
    from nncli.files import atomic_write_bytes

    check_output(path, force)
    try:
        atomic_write_bytes(Path(path), lambda handle: handle.write(text.encode("utf-8")))
    except OSError as exc:
        raise NncliError(f"{path}: cannot write ({exc.strerror or exc})") from None
