"""The YAML config: schema, defaults, validation, ``--set`` overrides and dumping.

A config file is parsed with ``yaml.safe_load``, checked against ``SCHEMA`` (unknown
keys are errors with a "did you mean" suggestion, values are type- and range-checked
with the key named in the message) and turned into a frozen, typed :class:`Config`
with every default filled in. ``Config.to_dict()`` dumps back to YAML that loads to
the same config.

``SCHEMA`` is the one place a key is spelled: its :class:`Field` holds the default and
the check, and the classes of :class:`Config` and its sections (their attributes), the
dump and the ``--set`` paths are made from the schema. Adding a key is one ``Field``.
"""

from __future__ import annotations

import copy
import difflib
import functools
import math
import operator
import reprlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

import yaml

from nncli.data.cells import DEFAULT_NA_VALUES
from nncli.errors import NncliError
from nncli.nn.activations import ACTIVATIONS
from nncli.nn.losses import LOSSES
from nncli.nn.optim import UPDATES

# Names behind every string option. Activations, losses and optimizers are named by the
# registries in nncli.nn (adding one is one entry there); these tuples are their names at
# import time, while validation reads the registries themselves (see choice).
ACTIVATION_NAMES = tuple(ACTIVATIONS)
LOSS_NAMES = tuple(LOSSES)
OPTIMIZER_NAMES = tuple(UPDATES)
NORMALIZE_NAMES = ("none", "scale", "mean", "standard")
INIT_NAMES = ("auto", "xavier", "he")
DTYPE_NAMES = ("float32", "float64")
IMAGE_MODES = ("L", "RGB")
EARLY_STOP_METRICS = ("val_loss", "val_acc", "val_rmse", "loss")
TASK_NAMES = ("classification", "regression")
TARGET_NORMALIZE_NAMES = ("standard", "none")

# Common names from other libraries, for "did you mean" when spelling alone won't find it.
SYNONYMS = {
    "learning_rate": "train.lr",
    "weight_decay": "reg.lambda",
    "l2": "reg.lambda",
    "alpha": "train.lr",
    "n_epochs": "train.epochs",
    "num_epochs": "train.epochs",
    "max_epochs": "train.epochs",
    "batchsize": "train.batch_size",
    "optim": "train.optimizer",
    "solver": "train.optimizer",
    "hidden_layers": "model.hidden",
    "hidden_sizes": "model.hidden",
    "hidden_layer_sizes": "model.hidden",
    "layers": "model.hidden",
    "loss_type": "loss.type",
    "delta": "loss.margin",
    "scheduler": "train.lr_schedule",
    "schedule": "train.lr_schedule",
    "patience": "train.early_stopping",
    "random_state": "seed",
    "target": "data.label_column",
    "label": "data.label_column",
}

Checker = Callable[[Any, str], Any]


def _printable(text: str) -> str:
    """``text`` with control characters escaped, so an error message stays on one line."""
    return text if text.isprintable() else repr(text)[1:-1]


def _fail(key: str, message: str) -> NncliError:
    return NncliError(f"config key '{_printable(key)}': {message}")


# A bounded repr: YAML aliases can make a 1 kB file a list of 10^9 strings ("billion
# laughs"), which safe_load builds as shared references but a plain repr() would expand.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 60, 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


def _describe(value: Any) -> str:
    text = _REPR.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _as_int(value: Any, key: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise _fail(key, f"expected an integer, got {_describe(value)}")
    if minimum is not None and value < minimum:
        raise _fail(key, f"must be >= {minimum}, got {value}")
    return value


def _as_float(value: Any, key: str, minimum: float | None = None, strict: bool = False,
              maximum: float | None = None, strict_max: bool = False) -> float:
    # PyYAML reads "1e-3" (no dot) as a string; accept numeric strings as users expect.
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _fail(key, f"expected a number, got {_describe(value)}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(key, f"expected a number, got {_describe(value)}")
    try:
        value = float(value)
    except OverflowError:  # an int too large for a float
        raise _fail(key, "must be finite, got an integer too large for a float") from None
    if not math.isfinite(value):
        raise _fail(key, f"must be finite, got {value}")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        raise _fail(key, f"must be {'>' if strict else '>='} {minimum}, got {value}")
    if maximum is not None and (value > maximum or (strict_max and value == maximum)):
        raise _fail(key, f"must be {'<' if strict_max else '<='} {maximum}, got {value}")
    return value


def integer(minimum: int | None = None) -> Checker:
    """A checker of whole numbers (``5.0`` is 5) of at least ``minimum``."""
    return lambda value, key: _as_int(value, key, minimum)


def number(minimum: float | None = None, strict: bool = False, maximum: float | None = None,
           strict_max: bool = False) -> Checker:
    """A checker of finite numbers (``"1e-3"`` too) from ``minimum`` to ``maximum``, each
    bound excluded when ``strict`` / ``strict_max``."""
    return lambda value, key: _as_float(value, key, minimum, strict, maximum, strict_max)


def choice(choices: Iterable[str]) -> Checker:
    """A checker accepting the names in ``choices`` (a tuple, or a registry dict read at
    each check, so that a name registered later is accepted)."""

    def check(value: Any, key: str) -> str:
        names = tuple(choices)
        if not isinstance(value, str) or value not in names:
            hint = ""
            if isinstance(value, str):
                close = difflib.get_close_matches(value, names, n=1)
                hint = f" — did you mean '{close[0]}'?" if close else ""
            raise _fail(key, f"unknown value {_describe(value)}{hint} (known: {', '.join(names)})")
        return value

    return check


def _optional_str(value: Any, key: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise _fail(key, f"expected a non-empty string, got {_describe(value)}")
    return value


def _required_str(value: Any, key: str) -> str:
    if value is None:
        raise _fail(key, "is required")
    return _optional_str(value, key)  # type: ignore[return-value]


NAME_MAX_BYTES = 255  # the longest file name most file systems take (NAME_MAX)


def check_run_name(value: Any, key: str = "name") -> str | None:
    """The run name: one plain folder name, as the run directory is ``runs/<name>``.

    Refused (as git refuses such ref names): empty, ``.`` and ``..``, a ``/`` or ``\\``
    (a name must not reach outside ``runs/`` or into a subfolder of it), NUL and other
    control characters, more than 255 bytes in UTF-8.
    """
    name = _optional_str(value, key)
    if name is None:
        return None
    problem = None
    if name in (".", ".."):
        problem = "is a reference to a folder, not a name"
    elif "/" in name or "\\" in name:
        problem = "must be one folder name without '/' or '\\' (runs go to runs/<name>; " \
                  "to put a run elsewhere use --out DIR)"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        problem = "must not contain control characters"
    elif len(name.encode("utf-8", "surrogatepass")) > NAME_MAX_BYTES:
        problem = f"is longer than {NAME_MAX_BYTES} bytes"
    if problem:
        raise _fail(key, f"{_describe(name)} {problem}")
    return name


def _check_image_size(value: Any, key: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _fail(key, f"expected [width, height] or null, got {_describe(value)}")
    width, height = (_as_int(v, key, minimum=1) for v in value)
    return (width, height)


def _check_hidden(value: Any, key: str) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise _fail(key, f"expected a list of layer widths like [128, 64], got {_describe(value)}")
    return tuple(_as_int(v, key, minimum=1) for v in value)


def _check_init(value: Any, key: str) -> str | dict[str, float]:
    if isinstance(value, Mapping):
        if set(value) != {"normal"}:
            raise _fail(key, "expected auto | xavier | he | {normal: std}, "
                             f"got {_describe(value)}")
        return {"normal": _as_float(value["normal"], f"{key}.normal", minimum=0.0, strict=True)}
    return choice(INIT_NAMES)(value, key)


def _check_class_weight(value: Any, key: str) -> None | str | dict[str, float]:
    if value is None or value == "balanced":
        return value
    if isinstance(value, Mapping) and value:
        return {str(k): _as_float(v, f"{key}.{k}", minimum=0.0) for k, v in value.items()}
    raise _fail(key, f"expected null, balanced or {{class: weight}}, got {_describe(value)}")


def _check_batch_size(value: Any, key: str) -> int | str:
    if value == "full":
        return "full"
    if isinstance(value, str):
        raise _fail(key, f"expected a positive integer or 'full', got {_describe(value)}")
    return _as_int(value, key, minimum=1)


def _check_schedule(value: Any, key: str) -> str | dict[str, dict[str, float]]:
    if value is None:
        return "constant"
    if isinstance(value, str):
        return choice(("constant", "cosine"))(value, key)
    if isinstance(value, Mapping) and set(value) == {"step"}:
        step = value["step"] if value["step"] is not None else {}
        if not isinstance(step, Mapping):
            raise _fail(f"{key}.step", f"expected {{every: N, gamma: g}}, got {_describe(step)}")
        _reject_unknown(step, ("every", "gamma"), f"{key}.step")
        every = _as_int(step.get("every", 10), f"{key}.step.every", minimum=1)
        gamma = _as_float(step.get("gamma", 0.5), f"{key}.step.gamma", minimum=0.0, strict=True)
        return {"step": {"every": every, "gamma": gamma}}
    raise _fail(key, f"expected constant | cosine | {{step: {{every, gamma}}}}, "
                     f"got {_describe(value)}")


def _check_early_stopping(value: Any, key: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _fail(key, "expected null or {patience, metric, min_delta}, "
                         f"got {_describe(value)}")
    _reject_unknown(value, ("patience", "metric", "min_delta"), key)
    metric = value.get("metric", "val_loss")
    if metric == "train_loss":  # SPEC's prose name for the training loss, column "loss"
        metric = "loss"
    return {
        "patience": _as_int(value.get("patience", 5), f"{key}.patience", minimum=1),
        "metric": choice(EARLY_STOP_METRICS)(metric, f"{key}.metric"),
        "min_delta": _as_float(value.get("min_delta", 0.0), f"{key}.min_delta", minimum=0.0),
    }


def _check_loss_type(value: Any, key: str) -> str | None:
    """A loss of :data:`LOSSES`, or null: the task's own (softmax, or mse for regression),
    filled in by :func:`_check_task_rules`."""
    return None if value is None else choice(LOSSES)(value, key)


def _check_task_rules(resolved: dict[str, Any]) -> None:
    """The rules between keys that ``task`` sets (in place on the resolved document):
    regression's loss is mse (its default) and it has no class weights or accuracy; the
    classifier's default loss is softmax and it has no RMSE."""
    regression = resolved["task"] == "regression"
    loss = resolved["loss"]
    if loss["type"] is None:
        loss["type"] = "mse" if regression else "softmax"
    es = resolved["train"]["early_stopping"]
    metric = es["metric"] if es else None
    if regression and loss["type"] != "mse":
        raise _fail("loss.type", f"task: regression needs mse (the squared error of the "
                                 f"one output), got {loss['type']!r}; drop loss.type or set "
                                 f"it to mse")
    if regression and loss["class_weight"] is not None:
        raise _fail("loss.class_weight", "task: regression has no classes to weight; drop "
                                         "loss.class_weight")
    if regression and metric == "val_acc":
        raise _fail("train.early_stopping.metric", "val_acc is a classifier's; task: "
                                                   "regression has val_loss, val_rmse or loss")
    if not regression and metric == "val_rmse":
        raise _fail("train.early_stopping.metric", "val_rmse needs task: regression; a "
                                                   "classifier has val_loss, val_acc or loss")
COLUMN_TYPES = ("number", "category", "ignore")


def _check_columns(value: Any, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(key, f"expected {{column: number | category | ignore}}, got "
                         f"{_describe(value)}")
    return {str(name): choice(COLUMN_TYPES)(kind, f"{key}.{name}")
            for name, kind in value.items()}


def _check_na_values(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise _fail(key, f"expected a list of missing-value markers like [NA, \"?\"], got "
                         f"{_describe(value)}")
    markers = []
    for marker in value:
        if marker is None:  # YAML reads a bare null as None: the marker is what was written
            markers.append("null")
        elif isinstance(marker, (str, int, float)) and not isinstance(marker, bool):
            markers.append(str(marker))
        else:
            raise _fail(key, f"expected text or numbers as missing-value markers, got "
                             f"{_describe(marker)}")
    return tuple(markers)


@dataclass(frozen=True)
class Field:
    """One config key, and the only place it is spelled: its default, the function that
    checks and normalizes a given value (``check(value, "train.lr")``), and, for a key
    whose name cannot be an attribute, the attribute of :class:`Config` that holds it
    (``reg.lambda`` is ``cfg.reg_lambda``: ``lambda`` is a Python keyword). The typed
    objects, their attributes, the YAML dump and the ``--set`` paths follow from
    ``SCHEMA``."""

    default: Any
    check: Checker
    attribute: str | None = None
    # False for a key the SPEC does not name (``train.step``): the dump leaves it out while
    # it holds its default, so the config.yaml of a run is the SPEC's.
    dump_default: bool = True


SCHEMA: dict[str, Any] = {
    "name": Field(None, check_run_name),
    "seed": Field(0, integer(minimum=0)),
    "task": Field("classification", choice(TASK_NAMES)),
    "data": {
        "train": Field(None, _required_str),
        "val": Field(None, _optional_str),
        "val_split": Field(0.0, number(minimum=0.0, maximum=1.0, strict_max=True)),
        "test": Field(None, _optional_str),
        "image": {
            "size": Field(None, _check_image_size),
            "mode": Field("L", choice(IMAGE_MODES)),
        },
        "label_column": Field("label", _required_str),
        "normalize": Field("standard", choice(NORMALIZE_NAMES)),
        "normalize_target": Field("standard", choice(TARGET_NORMALIZE_NAMES)),
        "columns": Field({}, _check_columns),
        "na_values": Field(DEFAULT_NA_VALUES, _check_na_values),
        "missing": Field("impute", choice(("impute", "error"))),
        "test_split": Field(0.0, number(minimum=0.0, maximum=1.0, strict_max=True)),
    },
    "model": {
        "hidden": Field((), _check_hidden),
        "activation": Field("relu", choice(ACTIVATIONS)),
        "init": Field("auto", _check_init),
    },
    "loss": {
        "type": Field(None, _check_loss_type),
        "margin": Field(1.0, number(minimum=0.0)),
        "class_weight": Field(None, _check_class_weight),
    },
    "reg": {
        "lambda": Field(0.0, number(minimum=0.0), attribute="reg_lambda"),
    },
    "train": {
        "epochs": Field(100, integer(minimum=1)),
        "batch_size": Field(64, _check_batch_size),
        "lr": Field(0.001, number(minimum=0.0, strict=True)),
        "optimizer": Field("adam", choice(UPDATES)),
        "momentum": Field(0.9, number(minimum=0.0, maximum=1.0, strict_max=True)),
        "lr_schedule": Field("constant", _check_schedule),
        "early_stopping": Field(None, _check_early_stopping),
        "dtype": Field("float32", choice(DTYPE_NAMES)),
        "checkpoint_every": Field(1, integer(minimum=1)),
        # not a SPEC key: left out of the dump while "auto", so run files stay as before
        "step": Field("auto", choice(("auto", "textbook", "fused")), dump_default=False),
    },
}

# Attributes of a section that are no config key: given by the loader (config_from_dict),
# never read from YAML, compared or dumped. data.config_dir is the folder of the config
# file, for the hint when a relative data path is missing from the current directory but
# present there.
CONTEXT_ATTRIBUTES = {"data": ("config_dir",)}


def _all_paths(schema: Mapping[str, Any] = SCHEMA, prefix: str = "") -> list[str]:
    paths = []
    for name, node in schema.items():
        path = f"{prefix}{name}"
        paths.append(path)
        if isinstance(node, Mapping):
            paths.extend(_all_paths(node, f"{path}."))
    return paths


def suggest_key(key: str, known: tuple[str, ...] | list[str], prefix: str = "") -> str | None:
    """The most likely intended key for an unknown ``key`` at the level whose keys are ``known``.

    Tries, in order: spelling (difflib), initials (``learning_rate`` -> ``lr``), the same
    name in another section (``train.lambda`` -> ``reg.lambda``), and common synonyms
    from other libraries (``weight_decay`` -> ``reg.lambda``). Returns a full dotted path.
    """
    lowered = key.lower()
    close = difflib.get_close_matches(lowered, known, n=1, cutoff=0.6)
    if close:
        return prefix + close[0]
    words = [w for w in lowered.replace("-", "_").split("_") if w]
    initials = "".join(w[0] for w in words)
    for candidate in known:
        if len(words) > 1 and candidate == initials:
            return prefix + candidate
    for path in _all_paths():
        if path.rsplit(".", 1)[-1] == lowered and path != prefix + lowered:
            return path
    if lowered in SYNONYMS:
        return SYNONYMS[lowered]
    return None


def _reject_unknown(given: Mapping[str, Any], known: tuple[str, ...] | list[str],
                    prefix: str) -> None:
    dotted = f"{prefix}." if prefix else ""
    for key in given:
        if key not in known:
            guess = suggest_key(str(key), known, dotted)
            hint = f" — did you mean '{guess}'?" if guess else ""
            raise NncliError(f"unknown config key '{_printable(f'{dotted}{key}')}'{hint} "
                             f"(known here: {', '.join(known)})")


def _resolve(given: Any, schema: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        where = f"'{prefix}'" if prefix else "the top level"
        raise NncliError(f"config {where} must be a mapping of keys, got {_describe(given)}")
    _reject_unknown(given, list(schema), prefix)
    resolved: dict[str, Any] = {}
    for name, node in schema.items():
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(node, Mapping):
            resolved[name] = _resolve(given.get(name), node, path)
        else:
            resolved[name] = node.check(given.get(name, node.default), path)
    return resolved


# ---------------------------------------------------------------- typed objects from SCHEMA
#
# Each section of SCHEMA is a frozen dataclass whose attributes are its keys and its
# subsections (``cfg.data.image.size``); a key with ``Field.attribute`` is held by the
# top-level Config instead. The classes are made from the schema (once per shape of it),
# so that a key added to SCHEMA is at once a default, a check, an attribute and a line of
# the dump.

# Config's attributes as a tree: attribute -> the dotted key whose value it holds, or the
# Layout of a section; e.g. {"seed": "seed", "data": {"image": {"size": "data.image.size",
# ...}, ...}, "reg_lambda": "reg.lambda", ...}.
Layout = dict[str, Any]


def _layout(schema: Mapping[str, Any] = SCHEMA) -> Layout:
    """The attributes of :class:`Config` and their keys, in the schema's order (a section
    whose every key is held by Config itself, such as ``reg``, has no attribute)."""
    top: Layout = {}

    def place(node: Mapping[str, Any], into: Layout, prefix: str) -> None:
        for name, child in node.items():
            if isinstance(child, Mapping):
                section: Layout = {}
                place(child, section, f"{prefix}{name}.")
                if section:
                    into[name] = section
            elif child.attribute:
                top[child.attribute] = prefix + name
            else:
                into[name] = prefix + name

    place(schema, top, "")
    return top


class _Document:
    """What the top-level :class:`Config` adds to holding its values: dumping them."""

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML-ready types (lists, not tuples), in the schema's order."""
        places = {key: chain for chain, key in _chains(_layout()).items()}
        return _dump(self, SCHEMA, places, "")

    def to_yaml(self) -> str:
        """The resolved config as YAML text; ``config_from_dict(yaml.safe_load(text))`` == self."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


def _chains(layout: Layout, prefix: str = "") -> dict[str, str]:
    """Each attribute chain of ``layout`` (``data.image.size``, ``reg_lambda``) -> its key."""
    chains: dict[str, str] = {}
    for attribute, node in layout.items():
        if isinstance(node, dict):
            chains.update(_chains(node, f"{prefix}{attribute}."))
        else:
            chains[prefix + attribute] = node
    return chains


def _section_name(chain: str) -> str:
    """The class name of the section at attribute chain ``chain``: data.image -> ImageConfig."""
    return chain.rsplit(".", 1)[-1].capitalize() + "Config" if chain else "Config"


def _make_classes(layout: Layout, chain: str = "") -> dict[str, type]:
    """A frozen dataclass for each section of ``layout``, by attribute chain ("" is Config)."""
    classes: dict[str, type] = {}
    fields: list[Any] = []
    for attribute, node in layout.items():
        if isinstance(node, dict):
            classes.update(_make_classes(node, f"{chain}.{attribute}" if chain else attribute))
        fields.append((attribute, Any))
    fields += [(name, Any, field(default=None, compare=False))
               for name in CONTEXT_ATTRIBUTES.get(chain, ())]
    cls = make_dataclass(_section_name(chain), fields, frozen=True,
                         bases=() if chain else (_Document,))
    cls.__module__ = __name__
    cls.__doc__ = (f"The config's ``{chain}`` section, validated, every default filled in."
                   if chain else "A validated config with every default filled in. "
                                 "``reg_lambda`` is YAML's ``reg.lambda``.")
    classes[chain] = cls
    return classes


_CLASSES: dict[str, dict[str, type]] = {}  # repr of a layout -> its classes


def _classes(layout: Layout) -> dict[str, type]:
    """The classes of ``layout``, made once for each shape of the schema."""
    key = repr(layout)
    if key not in _CLASSES:
        _CLASSES[key] = _make_classes(layout)
    return _CLASSES[key]


def _build(layout: Layout, classes: Mapping[str, type], resolved: Mapping[str, Any],
           context: Mapping[str, Mapping[str, Any]], chain: str = "") -> Any:
    """The object of the section at ``chain``, holding the values of ``resolved``."""
    values = {}
    for attribute, node in layout.items():
        if isinstance(node, dict):
            values[attribute] = _build(node, classes, resolved, context,
                                       f"{chain}.{attribute}" if chain else attribute)
        else:
            values[attribute] = functools.reduce(operator.getitem, node.split("."), resolved)
    return classes[chain](**values, **context.get(chain, {}))


def _plain(value: Any) -> Any:
    """``value`` as YAML's plain types: tuples as lists, containers copied (a dump never
    shares a dict with the frozen config)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _dump(cfg: Any, schema: Mapping[str, Any], places: Mapping[str, str], prefix: str
          ) -> dict[str, Any]:
    """The YAML document of ``cfg`` for ``schema``; ``places`` maps a key to its attribute
    chain."""
    doc: dict[str, Any] = {}
    for name, node in schema.items():
        key = prefix + name
        if isinstance(node, Mapping):
            doc[name] = _dump(cfg, node, places, f"{key}.")
        else:
            value = _plain(functools.reduce(getattr, places[key].split("."), cfg))
            if node.dump_default or value != node.default:
                doc[name] = value
    return doc


_DEFAULT_CLASSES = _classes(_layout())
Config = _DEFAULT_CLASSES[""]
DataConfig = _DEFAULT_CLASSES["data"]
ImageConfig = _DEFAULT_CLASSES["data.image"]
ModelConfig = _DEFAULT_CLASSES["model"]
LossConfig = _DEFAULT_CLASSES["loss"]
TrainConfig = _DEFAULT_CLASSES["train"]


def config_from_dict(raw: Any, default_name: str = "run", config_dir: str | None = None
                     ) -> Config:
    """Validate a parsed YAML document and return the resolved :class:`Config`.

    ``config_dir`` is the folder of the file it came from (only for error hints).
    Raises :class:`NncliError` naming the offending key on any problem.
    """
    resolved = _resolve(raw, SCHEMA, "")
    _check_task_rules(resolved)
    resolved["name"] = resolved["name"] or default_name
    layout = _layout()
    return _build(layout, _classes(layout), resolved, {"data": {"config_dir": config_dir}})


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _refuse_duplicate_keys(loader: yaml.SafeLoader, root: yaml.Node, source: str) -> None:
    """Raise when a mapping under ``root`` names a key twice (YAML 1.2 forbids it; PyYAML
    would keep the last silently), naming the key's path and both lines. Keys compare as
    the values they construct to (``1`` and ``1.0`` are one key, as in the dict they build);
    merge keys (``<<``) may be overridden, as YAML's merge rule says. Each node is visited
    once, so aliases cost nothing; the walk is iterative, so depth costs no recursion."""
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(node.value))
        if not isinstance(node, yaml.MappingNode):
            continue
        first: dict[Any, yaml.Mark] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                stack.append((value_node, path))
                continue
            key = loader.construct_object(key_node, deep=True)
            name = f"{path}.{key}" if path else str(key)
            mark = key_node.start_mark
            try:
                earlier = first.setdefault(key, mark)
            except TypeError:  # an unhashable key: the constructor reports it
                continue
            if earlier is not mark:
                same_line = mark.line == earlier.line
                at, first_at = (f"line {m.line + 1}" + (f", column {m.column + 1}"
                                                        if same_line else "")
                                for m in (mark, earlier))
                raise NncliError(f"{source}: duplicate key '{name}' at {at} (first at "
                                 f"{first_at}); a mapping may name each key once")
            stack.append((value_node, name))


def parse_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` with errors turned into one line naming ``source``, line and column;
    a key given twice in one mapping is an error too (see :func:`_refuse_duplicate_keys`)."""
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses control characters at once
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_duplicate_keys(loader, node, source)
        return loader.construct_document(node)
    except NncliError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        raise NncliError(f"{source}: invalid YAML at {where}: {exc.problem}") from None
    except yaml.reader.ReaderError as exc:  # a control character: it has a position, no mark
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        char = f"#x{exc.character:04x}" if isinstance(exc.character, int) else exc.character
        raise NncliError(f"{source}: invalid YAML at line {line}, column {column}: "
                         f"unacceptable character {char}") from None
    except yaml.YAMLError as exc:
        raise NncliError(f"{source}: invalid YAML: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - safe_load runs only PyYAML's own constructors
        # which raise plain ValueError/IndexError/KeyError/... for e.g. `2020-13-45` (month
        # 13), `!!float abc`, an empty `!!int`, `!!bool maybe` or an int of 5000 digits.
        raise NncliError(f"{source}: invalid YAML value: {type(exc).__name__}: {exc}") \
            from None
    finally:
        if loader is not None:
            loader.dispose()


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, value_text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise NncliError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.lr=0.05")
    parts = key.split(".")
    if any(not p for p in parts):
        raise NncliError(f"--set {item!r}: malformed key '{key}'")
    value = parse_yaml(value_text, f"--set {key}") if value_text.strip() else None
    return parts, value


def apply_overrides(raw: Any, overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of the parsed document ``raw`` with ``KEY=VALUE`` overrides applied.

    Values are YAML-typed (``--set train.batch_size=full``, ``--set model.hidden=[64,32]``).
    Keys must exist in the schema (or inside a mapping-valued option such as
    ``train.lr_schedule.step.every``); unknown keys are errors with a suggestion.
    """
    doc: dict[str, Any] = copy.deepcopy(raw) if isinstance(raw, Mapping) else {}
    for item in overrides:
        parts, value = _parse_override(item)
        node: Any = SCHEMA
        for depth, part in enumerate(parts):
            if isinstance(node, Mapping):
                if part not in node:
                    prefix = ".".join(parts[:depth])
                    _reject_unknown({part: None}, list(node), prefix)
                node = node[part]
            else:
                break  # inside a mapping-valued option: its own checker validates it
        target = doc
        for part in parts[:-1]:
            child = target.get(part)
            if not isinstance(child, dict):
                if child is not None and not isinstance(child, Mapping):
                    # e.g. lr_schedule: cosine, then --set train.lr_schedule.step.every=5
                    child = {}
                child = dict(child or {})
                target[part] = child
            target = child
        target[parts[-1]] = value
    return doc


CONFIG_MAX_BYTES = 1 << 20  # 1 MiB: configs are a few hundred bytes; YAML costs ~300x its size


def _config_size(path: Path) -> str:
    """The size of an over-long config for its error: exact for a regular file."""
    import os
    import stat

    try:
        info = os.stat(path)
    except OSError:
        info = None
    if info is not None and stat.S_ISREG(info.st_mode):
        return f"{info.st_size:,} bytes"
    return f"more than {CONFIG_MAX_BYTES:,} bytes"


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read, override and validate the YAML config at ``path``.

    Errors name the file: ``cfg.yaml: unknown config key 'train.learning_rate' — did you
    mean 'train.lr'?``.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:  # at most the limit + 1 bytes are ever read
            data = handle.read(CONFIG_MAX_BYTES + 1)
        if len(data) > CONFIG_MAX_BYTES:
            raise NncliError(f"{path}: the config file is {_config_size(path)}, over "
                             f"the limit of {CONFIG_MAX_BYTES:,} bytes (a config is a few "
                             f"hundred bytes; data belongs in data.train)")
        text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except FileNotFoundError:
        raise NncliError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise NncliError(f"{path}: is a directory, expected a YAML config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NncliError(f"{path}: cannot read config: {exc}") from None
    raw = parse_yaml(text, str(path))
    if raw is not None and not isinstance(raw, Mapping):
        raise NncliError(f"{path}: the config must be a YAML mapping (key: value lines), "
                         f"got {type(raw).__name__}")
    raw = apply_overrides(raw, overrides)
    try:
        return config_from_dict(raw, default_name=path.stem, config_dir=str(path.parent))
    except NncliError as exc:
        raise NncliError(f"{path}: {exc}") from None
