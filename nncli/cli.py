"""The ``nncli`` command line: parses arguments, calls the library, formats results.

Results go to stdout, messages to stderr. Library errors (:class:`NncliError`) become one
``Error: ...`` line and their exit code (2, or 1 for divergence); ``NNCLI_DEBUG=1`` shows
the traceback.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

import click

from nncli import __version__
from nncli.errors import NncliError


def _debug() -> bool:
    return os.environ.get("NNCLI_DEBUG", "") not in ("", "0")


class NncliGroup(click.Group):
    """A click group that turns library errors into one ``Error:`` line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NncliError as exc:
            if _debug():
                traceback.print_exc()
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            # The reader of our stdout went away (e.g. `| head`): not an error for us.
            sys.stderr.close()
            ctx.exit(0)
        except Exception as exc:  # noqa: BLE001 - last line of defence: never a raw traceback
            if _debug():
                traceback.print_exc()
            click.echo(f"Error: internal error: {type(exc).__name__}: {exc} "
                       f"(set NNCLI_DEBUG=1 for the traceback)", err=True)
            ctx.exit(2)


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=None, allow_nan=False))


def _table(rows: list[list[str]], header: list[str]) -> str:
    """Left-aligned text columns (numbers right-aligned)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        cells = []
        for i, cell in enumerate(row):
            text = str(cell)
            numeric = text.replace(".", "", 1).replace("e-", "").replace(",", "").isdigit()
            cells.append(text.rjust(widths[i]) if numeric and i else text.ljust(widths[i]))
        return "  ".join(cells).rstrip()

    return "\n".join([fmt(header), *(fmt(r) for r in rows)])


set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override a config key with a YAML-typed value, e.g. --set train.lr=0.05 (repeatable).")
json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print one JSON object to stdout instead of a table.")


@click.group(cls=NncliGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="nncli")
def main() -> None:
    """Train linear and MLP classifiers on image folders and tables from a YAML config.

    Forward and backward propagation are written by hand in NumPy; `nncli gradcheck`
    proves the gradients. Results go to stdout, progress and messages to stderr.
    """


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@set_option
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help="Check N random entries per parameter instead of all of them.")
@click.option("--tol", type=click.FloatRange(min=0.0), default=1e-6, show_default=True,
              help="Largest acceptable relative error.")
@json_option
def gradcheck(config: str, overrides: tuple[str, ...], samples: int | None, tol: float,
              as_json: bool) -> None:
    """Compare backprop gradients with centered finite differences, in float64.

    Builds CONFIG's model on a small sample of its training data and checks every
    parameter entry (or --samples N per parameter). Exits 1 if any relative error
    exceeds --tol.

    Example: nncli gradcheck configs/digits-mlp.yaml --samples 50
    """
    from nncli.config import load_config
    from nncli.gradcheck import gradcheck_config

    cfg = load_config(config, overrides)
    report = gradcheck_config(cfg, samples=samples, tol=tol)
    if as_json:
        _echo_json(report.to_dict())
    else:
        rows = []
        for name, p in report.params.items():
            status = "ok" if p.max_rel_error <= tol else "FAIL"
            rows.append([name, str(p.checked), f"{p.max_rel_error:.2e}", status])
        click.echo(_table(rows, ["param", "checked", "max_rel_error", "status"]))
        skipped = sum(p.skipped_at_kink for p in report.params.values())
        if skipped:
            click.echo(f"({skipped} entries skipped: every step h straddled a ReLU/hinge kink)",
                       err=True)
    if not report.ok:
        details = []
        for name in report.failing:
            p = report.params[name]
            a, n = p.worst_pair or (float("nan"), float("nan"))
            details.append(f"{name} max relative error {p.max_rel_error:.3g} at index "
                           f"{p.worst_index} (analytic {a:.6g}, numeric {n:.6g})")
        click.echo(f"gradcheck FAILED (tol {tol:g}): " + "; ".join(details), err=True)
        sys.exit(1)
    if not as_json:
        click.echo(f"gradcheck passed: {len(report.params)} parameters within tol {tol:g}",
                   err=True)


@main.command()
@click.argument("target", metavar="CONFIG|CHECKPOINT", type=click.Path())
@set_option
@json_option
def info(target: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Show the architecture, parameter counts, data shape, classes and resolved config.

    Example: nncli info configs/digits-mlp.yaml
    """
    import yaml

    from nncli.describe import info_for_checkpoint, info_for_config, is_checkpoint_path

    if is_checkpoint_path(target):
        if overrides:
            raise NncliError("--set applies to configs, not checkpoints")
        data, warning = info_for_checkpoint(target), None
    else:
        data, warning = info_for_config(target, overrides)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        _echo_json(data)
        return
    rows = []
    for layer in data["layers"]:
        rows.append([layer["name"], str(layer["in"] if layer["in"] is not None else "?"),
                     str(layer["out"] if layer["out"] is not None else "?"), layer["activation"],
                     f"{layer['params']:,}" if layer["params"] is not None else "?"])
    kind = "linear classifier" if data["model"] == "linear" else "MLP"
    click.echo(f"model: {kind}, loss {data['loss']}, reg lambda {data['reg_lambda']:g}")
    click.echo(_table(rows, ["layer", "in", "out", "activation", "params"]))
    total = data["total_params"]
    click.echo(f"total params: {total:,}" if total is not None else "total params: ?")
    if data.get("input_shape"):
        click.echo(f"input: shape {tuple(data['input_shape'])} -> D = {data['input_dim']}")
    if "classes" in data:
        shown = " ".join(data["classes"][:20]) + (" ..." if len(data["classes"]) > 20 else "")
        click.echo(f"classes ({len(data['classes'])}): {shown}")
    if "data" in data:
        click.echo(f"data: {data['data']['train']} ({data['data']['n']} examples, "
                   f"{data['data']['kind']})")
    if "checkpoint" in data:
        c = data["checkpoint"]
        click.echo(f"checkpoint: epoch {c['epoch']}, step {c['step']}, dtype {c['dtype']}")
    click.echo("config:")
    text = yaml.safe_dump(data["config"], sort_keys=False, default_flow_style=None)
    click.echo("\n".join("  " + line for line in text.rstrip().splitlines()))


if __name__ == "__main__":  # pragma: no cover
    main()
