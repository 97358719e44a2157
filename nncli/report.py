"""One run on one page (``nncli report``, ``nncli train --report``): a self-contained HTML
file with the resolved config, the learning curves, the final and best metrics, the
evaluation of ``best.npz`` on the run's held-out data (per-class table and confusion matrix,
or the regression metrics) and the weight pictures.

Self-contained: every picture is a PNG inlined as a ``data:`` URI, there is no JavaScript
and no reference to the network, so the file can be mailed or opened offline. The pictures
are drawn by :mod:`nncli.plots` and :mod:`nncli.weightviz` (matplotlib, the extra
``nncli[plot]``) into a temporary folder and read back.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nncli.checkpoint import load_checkpoint
from nncli.errors import NncliError
from nncli.rundir import atomic_write_bytes

REPORT_FILE = "report.html"
STYLE = ("body{font-family:sans-serif;max-width:1250px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
         "padding:.2em .6em;text-align:right}th{background:#f3f3f3}"
         "pre{background:#f7f7f7;padding:1em;overflow:auto}img{max-width:100%}")


def require_matplotlib() -> None:
    """An error (exit 2) naming the install line when matplotlib is not installed; checked
    before a run starts so ``train --report`` does not fail after the training."""
    from nncli.plots import pyplot

    pyplot()


def report_checkpoint(run: Path) -> Path:
    """The checkpoint the report evaluates: ``best.npz`` (``last.npz`` if there is none)."""
    for name in ("best.npz", "last.npz"):
        if (run / "checkpoints" / name).is_file():
            return run / "checkpoints" / name
    raise NncliError(f"{run}: no checkpoint to report on (checkpoints/best.npz is missing)")


def held_out_data(checkpoint: Path) -> tuple[str, str]:
    """The data the report evaluates on and the config key it came from: ``data.test``,
    else ``data.val``, else ``data.train`` (all of it, a validation split included)."""
    data = load_checkpoint(checkpoint).config.data
    for key in ("test", "val"):
        if getattr(data, key):
            return str(getattr(data, key)), f"data.{key}"
    splits = [f"{name} {share:g}" for name, share in
              (("val_split", data.val_split), ("test_split", data.test_split)) if share]
    # the splits are drawn inside training; the whole file is what can be read back here
    return str(data.train), ("data.train" + (f", all of it ({', '.join(splits)} included)"
                                             if splits else ""))


def png_data_uri(draw: Callable[[Path], Any]) -> str:
    """``draw(path)`` writes a PNG to ``path`` (in a temporary folder); its bytes as a
    ``data:image/png;base64,...`` URI."""
    with tempfile.TemporaryDirectory(prefix="nncli-report-") as folder:
        path = Path(folder) / "picture.png"
        draw(path)
        encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:image/png;base64,{encoded}"


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def html_table(header: list[str], rows: list[list[Any]]) -> str:
    """A table with ``header`` and ``rows`` (each as long as it), every cell escaped."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_number(c))}</td>" for c in row)
                   + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(uri: str, alt: str) -> str:
    return f'<p><img src="{uri}" alt="{html.escape(alt)}"></p>'


def metrics_section(summary: dict[str, Any]) -> str:
    """The final and best epochs' metrics of ``summary.json`` side by side (and the test
    split's metrics of best.npz when the run has one)."""
    final, best = summary.get("final") or {}, summary.get("best") or {}
    keys = [k for k in final if k != "epoch"] or [k for k in best if k != "epoch"]
    rows = [[key, final.get(key), best.get(key)] for key in keys]
    title = (f"<h2>Metrics</h2><p>{summary.get('epochs')} epochs; best epoch "
             f"{summary.get('best_epoch')} by {html.escape(str(summary.get('best_metric')))}"
             f"</p>")
    parts = [title, html_table(["metric", "final", f"best (epoch {best.get('epoch')})"], rows)]
    if isinstance(summary.get("test"), dict):
        parts += ["<h3>Test split (best.npz)</h3>",
                  html_table(["metric", "value"], [[k, v] for k, v in summary["test"].items()])]
    return "".join(parts)


def evaluation_section(checkpoint: Path, data: str, source: str) -> str:
    """best.npz evaluated on ``data``: a classifier's per-class table and confusion matrix
    (K, K) picture, or a regression model's metrics."""
    from nncli.inference import evaluate_checkpoint
    from nncli.plots import plot_confusion, plot_predicted_vs_actual

    report = evaluate_checkpoint(checkpoint, data)
    where = (f"<h2>Evaluation</h2><p>{html.escape(checkpoint.name)} on "
             f"<code>{html.escape(data)}</code> ({source}), {report['n']} examples</p>")
    if "rmse" in report:
        names = ["loss", "data_loss", "reg_loss", "mse", "rmse", "mae", "r2"]
        uri = png_data_uri(lambda path: plot_predicted_vs_actual(checkpoint, data, path))
        return (where + html_table(["metric", "value"], [[k, report[k]] for k in names])
                + _image(uri, "predicted against actual"))
    rows = [[name, m["precision"], m["recall"], m["f1"], m["support"]]
            for name, m in report["per_class"].items()]
    rows += [[key.replace("_", " "), *(report[key][f] for f in
                                       ("precision", "recall", "f1", "support"))]
             for key in ("macro_avg", "weighted_avg")]
    parts = [where, f"<p>accuracy {report['accuracy']:.4f}, loss {report['loss']:.6g}</p>",
             html_table(["class", "precision", "recall", "f1", "support"], rows)]
    if "confusion" in report:
        uri = png_data_uri(lambda path: plot_confusion(checkpoint, data, path))
        parts.append(_image(uri, "confusion matrix"))
    return "".join(parts)


def build_report(run_dir: str | Path) -> str:
    """The HTML page of ``run_dir`` (one string, self-contained): config, curves, metrics,
    evaluation on the held-out data, weights."""
    from nncli.plots import plot_curves
    from nncli.weightviz import plot_weights

    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise NncliError(f"{run}: not a run directory (no config.yaml)")
    require_matplotlib()  # before any work
    checkpoint = report_checkpoint(run)
    try:
        summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = {}
    data, source = held_out_data(checkpoint)
    name = html.escape(run.resolve().name)
    body = [f"<h1>Run {name}</h1>",
            "<h2>Learning curves</h2>",
            _image(png_data_uri(lambda path: plot_curves(run, path)), "learning curves"),
            metrics_section(summary) if isinstance(summary, dict) else "",
            evaluation_section(checkpoint, data, source),
            "<h2>Weights</h2>",
            _image(png_data_uri(lambda path: plot_weights(checkpoint, path)), "weights"),
            "<h2>Config (resolved)</h2>",
            f"<pre>{html.escape((run / 'config.yaml').read_text(encoding='utf-8'))}</pre>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>nncli report: {name}</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write :func:`build_report` of ``run_dir`` (of a sweep folder: its
    :func:`nncli.sweepreport.build_sweep_report`) to ``output`` (default
    ``RUN_DIR/report.html``) atomically and return its path."""
    from nncli.sweepreport import build_sweep_report, is_sweep

    path = Path(output) if output is not None else Path(run_dir) / REPORT_FILE
    if not path.parent.is_dir():
        raise NncliError(f"{path.parent}: no such folder to write {path.name} into")
    build = build_sweep_report if is_sweep(run_dir) else build_report
    page = build(run_dir).encode("utf-8")
    atomic_write_bytes(path, lambda handle: handle.write(page))
    return path
