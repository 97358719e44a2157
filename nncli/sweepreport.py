"""``nncli report SWEEP_DIR``: a sweep on one self-contained HTML page — the ranked table of
sweep.csv and, for each swept key, the ranked metric of every finished trial against the
key's value (a log x-axis for log-uniform keys and for positive values spanning more than
10x; a value that is not a number, such as a list of hidden sizes, gets a categorical axis).
Pictures are PNGs inlined as ``data:`` URIs, as in the run report (:mod:`nncli.report`).
"""

from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path
from typing import Any

from nncli.errors import NncliError
from nncli.sweep import CSV_FILE, PLAN_FILE

LOG_SPAN = 10.0  # positive grid values spanning more than this factor get a log axis


def is_sweep(folder: str | Path) -> bool:
    """``folder`` holds a sweep (its sweep.json)."""
    return (Path(folder) / PLAN_FILE).is_file()


def read_sweep(folder: Path) -> tuple[dict[str, Any], list[str], list[dict[str, str]]]:
    """sweep.json's plan, sweep.csv's header and rows; an error naming the file when one is
    missing or unreadable (a sweep interrupted before its first trial ended has no csv)."""
    try:
        plan = json.loads((folder / PLAN_FILE).read_text(encoding="utf-8"))
        with (folder / CSV_FILE).open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            rows = [dict(zip(header, r)) for r in reader]
    except (OSError, ValueError, StopIteration) as exc:
        raise NncliError(f"{folder}: cannot read the sweep ({exc}); run the sweep first"
                         ) from None
    return plan, header, rows


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def log_axis(key: str, values: list[float], plan: dict[str, Any]) -> bool:
    """A log x-axis for ``key``: a log-uniform range, or positive values spanning > 10x."""
    ranges = plan.get("space", {}).get("ranges", {})
    if ranges.get(key, {}).get("kind") == "log-uniform":
        return True
    return bool(values) and min(values) > 0 and max(values) / min(values) > LOG_SPAN


MAX_LABELLED_VALUES = 6  # up to this many distinct values, each gets its own tick


def _number_ticks(ax: Any, xs: list[float], texts: list[str], log: bool) -> None:
    """Ticks that stay legible: at the values tried, labelled as sweep.csv writes them
    (``1e-3``), when there are few; else at most 5 on a linear axis (the default ticks of
    a narrow range such as 0.001..0.005 overlap)."""
    distinct = sorted(set(xs))
    if len(distinct) <= MAX_LABELLED_VALUES:
        label = dict(zip(xs, texts))
        ax.set_xticks(distinct, [label[x] for x in distinct])
        ax.minorticks_off()
    elif not log:
        ax.locator_params(axis="x", nbins=5)


def plot_key(path: Path, key: str, metric: str, rows: list[dict[str, str]],
             plan: dict[str, Any]) -> Path:
    """One PNG at ``path``: ``metric`` (y) of each done trial against ``key`` (x)."""
    from nncli.plots import pyplot, save_figure

    done = [r for r in rows if r.get("status") == "done" and _number(r.get(metric, ""))
            is not None]
    xs = [_number(r[key]) for r in done]
    ys = [_number(r[metric]) for r in done]
    figure, ax = pyplot().subplots(figsize=(5.0, 3.5))
    if done and all(x is not None for x in xs):
        ax.scatter(xs, ys)
        log = log_axis(key, xs, plan)  # type: ignore[arg-type]
        if log:
            ax.set_xscale("log")
        _number_ticks(ax, xs, [r[key] for r in done], log)  # type: ignore[arg-type]
    else:  # values that are not numbers: one position per distinct value, in grid order
        grid = plan.get("space", {}).get("grid", {}).get(key, [])
        labels = list(dict.fromkeys([*grid, *(r[key] for r in done)]))
        ax.scatter([labels.index(r[key]) for r in done], ys)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.set_xlabel(key)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against {key}")
    ax.grid(True, alpha=0.3)
    figure.tight_layout()
    return save_figure(figure, path)


def build_sweep_report(folder: str | Path) -> str:
    """The HTML page of the sweep in ``folder`` (one string, self-contained)."""
    from nncli.report import STYLE, html_table, png_data_uri, require_matplotlib

    folder = Path(folder)
    require_matplotlib()
    plan, header, rows = read_sweep(folder)
    keys = list(plan.get("space", {}).get("grid", {})) + \
        list(plan.get("space", {}).get("ranges", {}))
    metric = header[len(keys) + 4]  # rank, trial, <keys>, status, best_epoch, <metric>
    name = html.escape(folder.resolve().name)
    body = [f"<h1>Sweep {name}</h1>",
            f"<p>{len(rows)} trials, ranked by {html.escape(metric)} (of each trial's best "
            f"epoch)</p>"]
    for key in keys:
        uri = png_data_uri(lambda path, k=key: plot_key(path, k, metric, rows, plan))
        body.append(f'<h2>{html.escape(key)}</h2><p><img src="{uri}" '
                    f'alt="{html.escape(metric)} against {html.escape(key)}"></p>')
    shown = [c for c in header if c not in ("run_dir", "seconds")]
    body += ["<h2>Trials</h2>",
             html_table(shown, [[r.get(c, "") for c in shown] for r in rows])]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>nncli sweep report: {name}</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
