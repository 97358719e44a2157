"""The ``nncli`` command line: parses arguments, calls the library, formats results.

Results go to stdout, messages to stderr. Library errors (:class:`NncliError`) become one
``Error: ...`` line and their exit code (2, or 1 for divergence); ``NNCLI_DEBUG=1`` shows
the traceback.
"""

from __future__ import annotations

import os
import sys

from nncli import interrupts


def _interrupted_at_start_up(signum: int, frame: object) -> None:
    """SIGINT/SIGTERM while this module is imported: nothing to clean up and no frame of
    ours to catch an exception in, so one line and exit 130 (main installs the handlers
    every command runs with)."""
    try:
        sys.stderr.write(f"Error: interrupted by {interrupts.signal_name(signum)} "
                         f"during start-up\n")
        sys.stderr.flush()
    finally:
        os._exit(130)


# Before click and the rest are imported; the previous handlers return at the module's end.
_restore_start_up_handlers = interrupts.install_early(_interrupted_at_start_up)

import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import traceback  # noqa: E402
from typing import Any  # noqa: E402

import click  # noqa: E402

from nncli import __version__  # noqa: E402
from nncli.errors import NncliError  # noqa: E402


def _debug() -> bool:
    return os.environ.get("NNCLI_DEBUG", "") not in ("", "0")


def _one_line(text: str) -> str:
    """An error or warning message as one inert line (the contract: exit 2 prints exactly one
    line): control characters, such as a file name's ``\\n`` or ``\\x1b[2J``, are shown as
    escapes (:func:`nncli.text.printable`) instead of breaking the line or reaching the
    terminal."""
    from nncli.text import printable

    return printable(text.strip())


class _EchoWarnings(logging.Handler):
    """Library log records of level WARNING and up, as ``warning: ...`` lines on stderr
    (resolved at each record, so it follows a replaced sys.stderr)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(f"{record.levelname.lower()}: {_one_line(record.getMessage())}", err=True)
        except Exception:  # noqa: BLE001 - logging must never break the command
            self.handleError(record)


def _route_library_warnings() -> None:
    log = logging.getLogger("nncli")
    if not any(isinstance(h, _EchoWarnings) for h in log.handlers):
        log.addHandler(_EchoWarnings(logging.WARNING))


# click >= 8.2 signals "no arguments: show the help" with this UsageError subclass.
_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _ClosedStream:
    """Stands for sys.stdin/sys.stdout when the process started with that descriptor
    closed (``<&-``, ``>&-``; Python then sets it to None and click would drop every
    line): reading or writing it is an :class:`NncliError` naming the stream, so a
    command never reports success for output that went nowhere."""

    def __init__(self, name: str, hint: str) -> None:
        self.name, self.hint = name, hint
        self.closed = False  # as a file object says; click and logging look at it

    def _fail(self, *args: Any) -> Any:
        raise NncliError(f"{self.name} is closed (file descriptor {self.fileno_value} was "
                         f"not open when nncli started); {self.hint}")

    @property
    def fileno_value(self) -> int:
        return 0 if self.name == "stdin" else 1

    write = read = readline = readlines = __iter__ = _fail

    def fileno(self) -> int:
        import errno

        raise OSError(errno.EBADF, f"{self.name} is closed")

    def flush(self) -> None:
        """Nothing to flush (the first write already failed)."""

    def isatty(self) -> bool:
        return False


def _check_standard_streams() -> None:
    """Replace a None sys.stdin/sys.stdout (descriptor closed at start) by a
    :class:`_ClosedStream`."""
    if sys.stdout is None:
        sys.stdout = _ClosedStream(  # type: ignore[assignment]
            "stdout", "redirect it to a file, or to /dev/null to discard the output")
    if sys.stdin is None:
        sys.stdin = _ClosedStream(  # type: ignore[assignment]
            "stdin", "give the inputs as arguments, or redirect stdin (< /dev/null for none)")


def _interrupted_message() -> str:
    return f"Error: interrupted by {interrupts.signal_name(interrupts.received())}"


class NncliGroup(click.Group):
    """A click group that turns library errors into one ``Error:`` line and an exit code.

    SIGINT and SIGTERM are KeyboardInterrupt for every command, from the moment ``main``
    is entered (:mod:`nncli.interrupts`); an interrupt anywhere — start-up, click's own
    parsing, any phase of the command — is one ``Error: interrupted ...`` line, exit 130.
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """click's entry point (``nncli`` and ``python -m nncli.cli`` both come here):
        install the signal handlers first, then let click run the command."""
        restore = interrupts.install()
        try:
            _check_standard_streams()
            from nncli.testhooks import pause_here

            pause_here("import")
            return super().main(*args, **kwargs)
        except KeyboardInterrupt:  # outside any command, e.g. at start-up
            interrupts.stop()
            click.echo(_interrupted_message(), err=True)
            sys.exit(130)
        except NncliError as exc:  # outside any command, e.g. `nncli --help >&-`
            click.echo(f"Error: {_one_line(str(exc))}", err=True)
            sys.exit(exc.exit_code)
        finally:
            restore()

    @staticmethod
    def _interrupted(ctx: click.Context) -> None:
        """One line, exit 130; later signals are ignored, the process is on its way out."""
        interrupts.stop()
        click.echo(_interrupted_message(), err=True)
        ctx.exit(130)

    @staticmethod
    def _usage_error(ctx: click.Context, exc: click.UsageError) -> None:
        """A bad command, argument or option: one ``Error:`` line too, saying where to look."""
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"Error: {_one_line(exc.format_message())}{where}", err=True)
        ctx.exit(exc.exit_code)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:  # the group's own options, e.g. `nncli --bogus`
            if isinstance(exc, _NO_ARGS_IS_HELP):  # plain `nncli`: click shows the help
                raise
            self._usage_error(ctx, exc)
            raise  # not reached: ctx.exit raises
        except KeyboardInterrupt:  # else click would print "Aborted!" and exit 1
            self._interrupted(ctx)
            raise  # not reached: ctx.exit raises

    def invoke(self, ctx: click.Context) -> Any:
        _route_library_warnings()
        try:
            result = super().invoke(ctx)
            # A signal whose KeyboardInterrupt some C code swallowed still ends the command.
            interrupts.raise_if_interrupted()
            return result
        except NncliError as exc:
            if _debug():
                traceback.print_exc()
            if exc.exit_code == 130:  # interrupted (training saved its checkpoint)
                interrupts.stop()
            click.echo(f"Error: {_one_line(str(exc))}", err=True)
            ctx.exit(exc.exit_code)
        except click.UsageError as exc:
            self._usage_error(ctx, exc)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            self._interrupted(ctx)
        except BrokenPipeError:
            # The reader of our stdout went away (e.g. `| head`): not an error for us.
            sys.stderr.close()
            ctx.exit(0)
        except OSError as exc:
            if not _is_stream_write_error(exc):
                self._internal_error(ctx, exc)
            # A stream write (library file errors name their file and are NncliErrors):
            # stdout, which the output was for, e.g. `> /dev/full` or a read-only descriptor.
            click.echo(f"Error: cannot write the output to stdout ({exc.strerror})", err=True)
            ctx.exit(2)
        except Exception as exc:  # noqa: BLE001 - last line of defence: never a raw traceback
            self._internal_error(ctx, exc)

    @staticmethod
    def _internal_error(ctx: click.Context, exc: Exception) -> None:
        if _debug():
            traceback.print_exc()
        click.echo(f"Error: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
                   f"(set NNCLI_DEBUG=1 for the traceback)", err=True)
        ctx.exit(2)


def _is_stream_write_error(exc: OSError) -> bool:
    """An OSError from writing a standard stream: no file name (the library's file errors
    carry one, and become NncliErrors), and an errno that writes give."""
    import errno

    return exc.filename is None and exc.errno in (errno.EBADF, errno.ENOSPC, errno.EIO,
                                                  errno.EFBIG)


def _finite_or_none(obj: Any) -> Any:
    """JSON has no NaN/Infinity: report non-finite numbers as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(_finite_or_none(obj), indent=None, allow_nan=False))


def _table(rows: list[list[str]], header: list[str]) -> str:
    """Left-aligned text columns (numbers right-aligned); a cell's control characters (a
    class name may hold any string) are shown as escapes, so each row stays one line."""
    from nncli.data import is_number
    from nncli.text import printable

    header = [printable(str(c)) for c in header]
    rows = [[printable(str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        cells = []
        for i, text in enumerate(row):
            numeric = is_number(text.replace(",", ""))
            cells.append(text.rjust(widths[i]) if numeric and i else text.ljust(widths[i]))
        return "  ".join(cells).rstrip()

    return "\n".join([fmt(header), *(fmt(r) for r in rows)])


set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override a config key with a YAML-typed value, e.g. --set train.lr=0.05 (repeatable).")
json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print one JSON object to stdout instead of a table.")


# The thread-count variables of the BLAS libraries NumPy may be built with (OpenBLAS,
# OpenMP-based builds, MKL, Apple Accelerate); each is read once, when NumPy loads it.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                         "VECLIB_MAXIMUM_THREADS")


def set_blas_threads(n: int) -> None:
    """Make NumPy's BLAS use ``n`` threads. BLAS reads these variables when NumPy is
    imported, which no nncli command does before its options are parsed (in a process
    that has already imported NumPy, use threadpoolctl instead)."""
    for name in BLAS_THREAD_VARIABLES:
        os.environ[name] = str(n)


def _thread_count(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """``--threads`` / ``NNCLI_THREADS``: a positive integer; a bad value names its source."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit() and int(text) >= 1:
        return int(text)
    source = ctx.get_parameter_source(param.name or "threads")
    where = ("NNCLI_THREADS" if source == click.core.ParameterSource.ENVIRONMENT
             else "--threads")
    raise click.BadParameter(f"{where}={value!r}: expected a positive integer",
                             ctx=ctx, param=param)


@click.group(cls=NncliGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="nncli")
@click.option("--threads", type=str, envvar="NNCLI_THREADS", default=None,
              callback=_thread_count, metavar="N",
              help="BLAS threads for the math (env NNCLI_THREADS); default: as BLAS decides "
                   "(all cores). Use 1 per run when several run at once.")
def main(threads: int | None) -> None:
    """Train linear and MLP classifiers on image folders and tables from a YAML config.

    Forward and backward propagation are written by hand in NumPy; `nncli gradcheck`
    proves the gradients. Results go to stdout, progress and messages to stderr.
    """
    if threads is not None:
        set_blas_threads(threads)
    ctx = click.get_current_context()
    if isinstance(sys.stdout, _ClosedStream) and ctx.invoked_subcommand != "init":
        # Before the work, not after it: every command but init -o FILE prints its result.
        sys.stdout.write("")


def _finite_tolerance(value: float) -> float:
    """gradcheck's --tol: a finite number >= 0 (NaN would pass every check, as no error
    compares greater than it; inf would pass any gradient)."""
    if not math.isfinite(value) or value < 0:
        raise click.BadParameter(f"{value!r} is not a finite number >= 0 (e.g. 1e-6)")
    return abs(value)  # -0.0 as 0


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@set_option
@click.option("--samples", metavar="N|all", default=None,
              help="Check N random entries of each parameter that has more (default 4096, "
                   "with a note on stderr for each parameter sampled), or 'all' entries.")
@click.option("--tol", type=float, default=1e-6, show_default=True,
              callback=lambda ctx, param, value: _finite_tolerance(value),
              help="Largest acceptable relative error (a finite number >= 0).")
@json_option
def gradcheck(config: str, overrides: tuple[str, ...], samples: str | None, tol: float,
              as_json: bool) -> None:
    """Compare backprop gradients with centered finite differences, in float64.

    Builds CONFIG's model on a small sample of its training data and checks up to 4096
    random entries of each parameter (--samples N, or --samples all for every entry).
    An entry that disagrees at step h=1e-5 is retried with smaller steps and Richardson
    extrapolation (truncation error shrinks with h, a wrong gradient does not); the table
    shows the step h of each parameter's worst entry. Progress goes to stderr. Exits 1 if
    any relative error exceeds --tol.

    Example: nncli gradcheck configs/digits-mlp.yaml --samples 50
    """
    from nncli.checking import GRADCHECK_HEADER, check_config_file, parse_samples
    from nncli.nn.gradcheck import DEFAULT_H

    try:
        n_samples = parse_samples(samples)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=click.get_current_context(),
                                 param_hint="'--samples'") from None
    progress = _GradcheckProgress(note_sampling=samples is None)
    try:
        result = check_config_file(config, overrides, n_samples, tol, progress)
    finally:
        progress.close()
    if as_json:
        _echo_json(result.report.to_dict())
    else:
        click.echo(_table(result.rows, list(GRADCHECK_HEADER)))
        if result.skipped_at_kink:
            click.echo(f"({result.skipped_at_kink} entries skipped: every step h straddled a "
                       f"ReLU/hinge kink)", err=True)
        if result.retried:
            click.echo(f"(retried after disagreeing or straddling a kink at h={DEFAULT_H:g}: "
                       f"{', '.join(result.retried)}; an h column 'h,h/2' is the Richardson "
                       f"estimate (4 D(h/2) - D(h)) / 3 of centered differences D)", err=True)
    if not result.ok:
        click.echo(f"gradcheck FAILED (tol {tol:g}): " + "; ".join(result.failures), err=True)
        sys.exit(1)
    if not as_json:
        click.echo(f"gradcheck passed: {len(result.report.params)} parameters within tol "
                   f"{tol:g} ({result.checked:,} of {result.entries:,} entries checked)",
                   err=True)


class _GradcheckProgress:
    """gradcheck's progress: a note on stderr when a parameter is sampled by default (no
    --samples), and on a terminal a tqdm bar per parameter."""

    def __init__(self, note_sampling: bool) -> None:
        self.note_sampling = note_sampling
        self.tty = sys.stderr.isatty()
        self.bars: list[Any] = []  # the open bar, if any

    def __call__(self, name: str, done: int, planned: int, entries: int) -> None:
        if done == 0:
            if self.note_sampling and planned < entries:
                click.echo(f"{name}: {planned:,} of {entries:,} entries (random sample; "
                           f"--samples all for every entry)", err=True)
            if self.tty:
                from tqdm import tqdm

                self.bars.append(tqdm(total=planned, desc=f"gradcheck {name}", unit="entry",
                                      leave=False, file=sys.stderr, mininterval=0.2,
                                      delay=0.5))
        elif self.bars:
            self.bars[-1].update(1)
            if done == planned:
                self.bars.pop().close()

    def close(self) -> None:
        """Close a bar left open (the check failed or was interrupted)."""
        for bar in self.bars:
            bar.close()


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
        click.echo(f"warning: {_one_line(warning)}", err=True)
    if as_json:
        _echo_json(data)
        return
    rows = []
    for layer in data["layers"]:
        rows.append([layer["name"], str(layer["in"] if layer["in"] is not None else "?"),
                     str(layer["out"] if layer["out"] is not None else "?"), layer["activation"],
                     f"{layer['params']:,}" if layer["params"] is not None else "?"])
    linear = "linear regression" if data.get("task") == "regression" else "linear classifier"
    kind = linear if data["model"] == "linear" else "MLP"
    click.echo(f"model: {kind}, loss {data['loss']}, reg lambda {data['reg_lambda']:g}")
    click.echo(_table(rows, ["layer", "in", "out", "activation", "params"]))
    total = data["total_params"]
    click.echo(f"total params: {total:,}" if total is not None else "total params: ?")
    if data.get("input_shape"):
        click.echo(f"input: shape {tuple(data['input_shape'])} -> D = {data['input_dim']}")
    if "classes" in data:
        from nncli.text import printable

        shown = " ".join(printable(c) for c in data["classes"][:20]) + (
            " ..." if len(data["classes"]) > 20 else "")
        click.echo(f"classes ({len(data['classes'])}): {shown}")
    if "data" in data:
        click.echo(f"data: {data['data']['train']} ({data['data']['n']} examples, "
                   f"{data['data']['kind']})")
    if "columns" in data:  # a table's columns: type, categories, inputs (numbers: a count)
        columns = data["columns"]
        if all(c["type"] == "number" for c in columns):
            click.echo(f"columns: {len(columns)}, all number")
        else:
            click.echo(_table([[c["name"], c["type"], str(c["categories"] or ""),
                                str(c["inputs"])] for c in columns],
                              ["column", "type", "categories", "inputs"]))
    if "checkpoint" in data:
        c = data["checkpoint"]
        click.echo(f"checkpoint: epoch {c['epoch']}, step {c['step']}, dtype {c['dtype']}")
    click.echo("config:")
    text = yaml.safe_dump(data["config"], sort_keys=False, default_flow_style=None)
    click.echo("\n".join("  " + line for line in text.rstrip().splitlines()))


class _CliProgress:
    """On a terminal, one tqdm bar over the whole run (its position and ETA are the run's,
    not the epoch's) with a line per epoch above it; otherwise a plain line per epoch; or
    nothing with --quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.bar: Any = None
        self.epochs = 0
        self.seen = 0
        self.loss_sum = 0.0

    def on_train_start(self, run_dir: Any, n_train: int, start_epoch: int, epochs: int) -> None:
        if self.quiet:
            return
        what = f"resuming at epoch {start_epoch + 1}" if start_epoch else "training"
        click.echo(f"{what}: {n_train} examples, {epochs} epochs -> {run_dir}", err=True)
        if self.tty:
            from tqdm import tqdm

            self.epochs = epochs
            self.bar = tqdm(total=(epochs - start_epoch) * n_train, unit="ex", unit_scale=True,
                            leave=False, file=sys.stderr, mininterval=0.2,
                            desc=f"epoch {start_epoch + 1}/{epochs}")

    def on_epoch_start(self, epoch: int, epochs: int, n_samples: int) -> None:
        self.seen, self.loss_sum = 0, 0.0
        if self.bar is not None:
            self.bar.set_description(f"epoch {epoch}/{epochs}", refresh=False)

    def on_batch(self, n_samples: int, loss: float) -> None:
        self.seen += n_samples
        self.loss_sum += loss * n_samples
        if self.bar is not None:
            self.bar.update(n_samples)
            if self.seen % 4096 < n_samples:
                self.bar.set_postfix(loss=f"{self.loss_sum / self.seen:.4f}", refresh=False)

    def on_epoch_end(self, row: dict[str, Any]) -> None:
        if self.quiet:
            return
        score = "train_rmse" if "train_rmse" in row else "train_acc"  # regression: RMSE
        val_score = "val_" + score[6:]
        parts = [f"epoch {row['epoch']}", f"loss {row['loss']:.4f}",
                 f"{score} {row[score]:.4f}"]
        if row.get("val_loss") is not None:
            parts += [f"val_loss {row['val_loss']:.4f}", f"{val_score} {row[val_score]:.4f}"]
        parts.append(f"{row['seconds']:.2f}s")
        if self.bar is not None:
            self.bar.write("  ".join(parts), file=sys.stderr)
            if row["epoch"] == self.epochs:
                self.close()
        else:
            click.echo("  ".join(parts), err=True)

    def close(self) -> None:
        """Remove the bar (at the end, or when the run stops early or fails)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _silence_this_rank() -> None:
    """Ranks above 0 of an MPI run print nothing: their stdout and stderr (also library
    warnings, and C code's) go to /dev/null; NNCLI_DEBUG=1 keeps their stderr."""
    null = os.open(os.devnull, os.O_WRONLY)
    sys.stdout.flush()
    os.dup2(null, 1)
    if not _debug():
        sys.stderr.flush()
        os.dup2(null, 2)
    os.close(null)


def _require_matplotlib(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """--report: no matplotlib is an error now, before the training starts."""
    if value:
        from nncli.report import require_matplotlib

        require_matplotlib()
    return value


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="The run directory itself (default runs/<name>, or runs/<name>-2 if taken).")
@set_option
@click.option("--resume", type=click.Path(), default=None, metavar="CKPT|DIR",
              help="Continue from a checkpoint or a run directory's checkpoints/last.npz.")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Override seed.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output on stderr.")
@click.option("--report", "with_report", is_flag=True, callback=_require_matplotlib,
              help="Write RUN_DIR/report.html at the end (needs matplotlib).")
@json_option
def train(config: str, out: str | None, overrides: tuple[str, ...], resume: str | None,
          seed: int | None, quiet: bool, with_report: bool, as_json: bool) -> None:
    """Train the model of CONFIG and write its run directory.

    Example: nncli train configs/digits-mlp.yaml --set train.lr=0.05

    Under mpirun (mpirun -n K nncli train CONFIG) the training is data-parallel over K
    processes; rank 0 writes the run directory and prints, the others are silent.
    """
    from nncli.config import load_config
    from nncli.parallel import world
    from nncli.train import train as run_training

    comm = world()  # a plain process unless an MPI launcher started this one
    if not comm.is_root:
        _silence_this_rank()
    if seed is not None:
        overrides = (*overrides, f"seed={seed}")
    cfg = load_config(config, overrides)
    # SIGINT and SIGTERM are KeyboardInterrupt for every command (NncliGroup.main).
    progress = _CliProgress(quiet or not comm.is_root)
    try:
        with comm.session():
            result = run_training(cfg, out=out, resume=resume, progress=progress, comm=comm)
    finally:
        progress.close()
    if not comm.is_root:
        return
    if with_report:
        from nncli.report import write_report

        write_report(result.run_dir)
    summary = result.summary
    if as_json:
        _echo_json(summary)
        return
    best, final = summary["best"], summary["final"]
    lines = [f"run: {result.run_dir}", f"epochs: {summary['epochs']}"]
    score = "rmse" if final and "train_rmse" in final else "acc"  # regression: RMSE
    if final:
        lines.append(f"final: loss {final['loss']:.4f}  train_{score} "
                     f"{final[f'train_{score}']:.4f}"
                     + (f"  val_{score} {final[f'val_{score}']:.4f}"
                        if final.get(f"val_{score}") is not None else ""))
    if best:
        lines.append(f"best epoch {summary['best_epoch']} by {summary['best_metric']}")
    if "test" in summary:
        t = summary["test"]
        figures = f"rmse {t['rmse']:.4g}  r2 {t['r2']:.4f}" if "rmse" in t else \
            f"accuracy {t['accuracy']:.4f}"
        lines.append(f"test (best.npz): {figures}  loss {t['loss']:.4f}  n {t['n']}")
    sps = summary["samples_per_sec"]
    lines.append(f"wall {summary['wall_seconds']:.2f}s"
                 + (f", {sps:,.0f} samples/s" if sps else ""))
    click.echo("\n".join(lines))


@main.command(name="eval")
@click.argument("checkpoint", type=click.Path())
@click.argument("data", type=click.Path())
@json_option
@click.option("--batch-size", type=click.IntRange(min=1), default=4096, show_default=True,
              help="Examples per forward pass.")
def eval_command(checkpoint: str, data: str, as_json: bool, batch_size: int) -> None:
    """Score CHECKPOINT on labelled DATA: loss, accuracy, per-class P/R/F1 with their
    macro and weighted averages, confusion.

    DATA is any source data.train accepts (image folder, .csv/.tsv, .npz) of the kind the
    checkpoint was trained on; table columns are matched to the training columns by name.
    The table shows the confusion matrix up to 40 classes, above that the 20 most frequent
    confusions; --json gives the matrix up to 1,000 classes, above that 'confusion_pairs'
    ([true, predicted, count] for each pair that occurs).

    Example: nncli eval runs/digits-mlp/checkpoints/best.npz datasets/digits/test
    """
    from nncli.inference import evaluate_checkpoint

    report = evaluate_checkpoint(checkpoint, data, batch_size)
    if as_json:
        _echo_json(report)
        return

    def num(x: float) -> str:
        """4 decimals, or 4 significant digits for a loss too large for them."""
        return f"{x:.4f}" if abs(x) < 1e9 else f"{x:.4g}"

    if "rmse" in report:  # a regression checkpoint: its errors in the target's units
        click.echo(f"n {report['n']}  loss {num(report['loss'])}  (data "
                   f"{num(report['data_loss'])} + reg {num(report['reg_loss'])})")
        click.echo(_table([[name, f"{report[name]:.6g}"] for name in ("mse", "rmse", "mae",
                                                                       "r2")],
                          ["metric", "value"]))
        return

    click.echo(f"n {report['n']}  accuracy {report['accuracy']:.4f}  loss {num(report['loss'])}"
               f"  (data {num(report['data_loss'])} + reg {num(report['reg_loss'])})")
    rows = [[name, f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}",
             str(m["support"])] for name, m in report["per_class"].items()]
    for name, key in (("macro avg", "macro_avg"), ("weighted avg", "weighted_avg")):
        m = report[key]
        rows.append([name, f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}",
                     str(m["support"])])
    click.echo(_table(rows, ["class", "precision", "recall", "f1", "support"]))
    classes = report["classes"]
    if len(classes) <= TABLE_CONFUSION_MAX_CLASSES:
        click.echo("confusion (rows true, columns predicted):")
        conf_rows = [[c, *map(str, r)] for c, r in zip(classes, report["confusion"])]
        click.echo(_table(conf_rows, ["", *classes]))
        return
    # Too wide to read as a matrix: the most frequent confusions instead.
    pairs = report.get("confusion_pairs") or [
        [classes[t], classes[p], n] for t, row in enumerate(report["confusion"])
        for p, n in enumerate(row) if n]
    errors = sorted((p for p in pairs if p[0] != p[1]), key=lambda p: -p[2])
    shown = errors[:TABLE_CONFUSIONS]
    click.echo(f"confusion: {len(classes):,} classes, too many for a matrix; the "
               f"{len(shown)} most frequent of {len(errors):,} confusions (all of them with "
               f"--json):")
    if shown:
        click.echo(_table([[t, p, str(n)] for t, p, n in shown],
                          ["true", "predicted", "count"]))


TABLE_CONFUSION_MAX_CLASSES = 40  # eval's table shows the full matrix up to this many classes
TABLE_CONFUSIONS = 20  # above, this many of the most frequent confusions


class _InputsCommand(click.Command):
    """predict's parser: an argument that begins with ``-`` is an option only when it is
    exactly one of the command's options (``--format=csv`` included); otherwise it is an
    input when it reads as one — an existing path, or a table row or number such as
    ``-1.5,2,3`` — and an unknown option (a typo) when it does not. Everything after ``--``
    is an input, ``-`` alone is stdin. (Plain click would read ``-h.png`` as ``-h``, the
    help, and ``--formt`` as an input.)"""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        import difflib
        import itertools

        names: set[str] = set(ctx.help_option_names)
        with_value: set[str] = set()
        for param in self.get_params(ctx):
            if isinstance(param, click.Option):
                names.update(param.opts + param.secondary_opts)
                if not param.is_flag and not param.count:
                    with_value.update(param.opts)
        options: list[str] = []
        positionals: list[str] = []
        rest = iter(args)
        for arg in rest:
            if arg == "--":
                positionals.extend(rest)
                break
            name = arg.split("=", 1)[0] if arg.startswith("--") else arg
            if arg == "-" or not arg.startswith("-"):
                positionals.append(arg)
            elif name in names:
                options.append(arg)
                if name == arg and name in with_value:
                    options.extend(itertools.islice(rest, 1))  # its value, whatever it is
            elif (arg[1:2].isdigit() or arg[1:2] == "." or os.path.lexists(arg)
                  or ctx.resilient_parsing):
                positionals.append(arg)
            else:
                close = difflib.get_close_matches(name, sorted(names), n=1)
                hint = f" Did you mean {close[0]}?" if close else ""
                raise click.NoSuchOption(
                    name, ctx=ctx, message=f"No such option: {name}.{hint} (An input that "
                    f"begins with '-' goes after '--': {ctx.command_path} CHECKPOINT -- {arg})")
        return super().parse_args(ctx, [*options, "--", *positionals])


@main.command(cls=_InputsCommand)
@click.argument("checkpoint", type=click.Path())
@click.argument("inputs", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["tsv", "csv", "jsonl"]), default="tsv",
              show_default=True, help="Output format.")
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True,
              help="Show the K most probable labels.")
@click.option("--keep-going", is_flag=True,
              help="Report a bad input as an Error line and continue (exit 2 at the end).")
def predict(checkpoint: str, inputs: tuple[str, ...], fmt: str, top_k: int,
            keep_going: bool) -> None:
    """Predict labels for image paths or table rows, one output line per input.

    INPUT are image paths or folders of images (image models), or rows of feature values
    (table models; a .csv/.tsv file stands for its rows, its columns matched by name). With
    no INPUT or '-', inputs are read from stdin, one per line (table rows may start with a
    header line), and each answer is written as soon as it is computed. An INPUT that
    begins with '-' (a path, a negative number) is an input, not an option, unless it is
    exactly one of the options below; everything after '--' is an input.

    Each input gives one record whatever its name holds: tsv escapes control characters
    (\\n, \\t, \\x1b, and \\\\ for a backslash), csv quotes fields with a comma, a quote or
    a line break (RFC 4180), jsonl escapes as JSON does.

    Example: ls images/*.png | nncli predict runs/digits-mlp/checkpoints/best.npz
    """
    from nncli.inference import Failure, Predictor, format_prediction
    from nncli.streaming import reads_stdin

    predictor = Predictor(checkpoint)
    if predictor.regression and click.get_current_context().get_parameter_source(
            "top_k") == click.core.ParameterSource.COMMANDLINE:
        raise NncliError(f"--top-k: {checkpoint} is a regression model (task: regression); "
                         f"it predicts one value per input, with no labels to rank")
    if reads_stdin(inputs) and sys.stdin is not None and sys.stdin.isatty():
        click.echo(f"reading {predictor.input_description} from the terminal, one per line; "
                   f"Ctrl-D ends the input", err=True)
    # On a terminal, csv cells show control characters as escapes (as ls does); piped, they
    # are the names' exact characters, quoted. color=True: click must not strip what looks
    # like an ANSI sequence out of the data.
    terminal = sys.stdout is not None and sys.stdout.isatty()
    failures = 0
    for results in predictor.run(inputs, sys.stdin, top_k):
        lines: list[str] = []
        for result in results:
            if isinstance(result, Failure):
                if lines:  # the answers before the bad input come first
                    click.echo("\n".join(lines), color=True)
                    lines = []
                if not keep_going:
                    raise result.error
                failures += 1
                click.echo(f"Error: {_one_line(str(result.error))}", err=True)
            else:
                lines.append(format_prediction(result, fmt, top_k, terminal=terminal))
        if lines:
            click.echo("\n".join(lines), color=True)
        sys.stdout.flush()
    if failures:
        sys.exit(2)


@main.command()
@click.argument("data", type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Write the config to FILE instead of stdout.")
@click.option("--label-column", default=None, metavar="NAME",
              help="The label column of a table (default: guessed from the header).")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def init(data: str, output: str | None, label_column: str | None, force: bool) -> None:
    """Write a commented starter config for DATA (image folder or table) that trains as is.

    Example: nncli init datasets/digits/train -o digits.yaml && nncli train digits.yaml
    """
    import shlex

    from nncli.starter import check_output, starter_config, write_config_file

    to_file = output is not None and output != "-"
    if to_file:
        check_output(output, force)  # before reading the data, which may take a while
    text = starter_config(data, label_column)
    if not to_file:
        click.echo(text, nl=False)
        return
    write_config_file(output, text, force=force)
    click.echo(f"wrote {output}; train it with: nncli train {shlex.quote(output)}", err=True)


@main.command()
@click.argument("target", metavar="CONFIG|CHECKPOINT", type=click.Path())
@click.option("--example", type=int, default=0, show_default=True, metavar="I",
              help="Which example of DATA, counting from 0 in its order.")
@click.option("--data", type=click.Path(), default=None, metavar="DATA",
              help="The source to take it from (default: the config's data.train).")
@json_option
def trace(target: str, example: int, data: str | None, as_json: bool) -> None:
    """Walk one example forward and backward through the network, layer by layer, and
    check each weight matrix's slope by a centered difference.

    A CONFIG's network is initialized as training would; a CHECKPOINT is used as it is.

    Example: nncli trace runs/iris/checkpoints/best.npz --example 3
    """
    from nncli.trace import trace_example

    walked = trace_example(target, example, data)
    if as_json:
        _echo_json(walked.fields())
        return
    click.echo("\n".join(walked.lines()))


_PNG = click.Path(dir_okay=False)


@main.command()
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path())
@click.option("-o", "--output", type=_PNG, default=None, metavar="FILE.png",
              help="Write the picture to FILE.png (default: RUN_DIR/curves.png).")
def plot(run_dir: str, output: str | None) -> None:
    """Draw RUN_DIR's learning curves against epoch into one PNG and print its path: loss,
    data and reg loss, train and val accuracy (RMSE for regression), lr; best epoch marked.

    Needs matplotlib: pip install "nncli[plot]".

    Example: nncli plot runs/digits-linear-softmax
    """
    from nncli.plots import plot_curves

    click.echo(str(plot_curves(run_dir, output)))


@main.group(cls=click.Group)
def viz() -> None:
    """Pictures of a checkpoint: its weights, its confusion matrix (needs matplotlib:
    pip install "nncli[plot]")."""


@viz.command(name="weights")
@click.argument("checkpoint", type=click.Path())
@click.option("-o", "--output", type=_PNG, default=None, metavar="FILE.png",
              help="Write the picture to FILE.png (default: RUN/weights.png).")
@click.option("--layer", type=click.IntRange(min=1), default=1, show_default=True,
              metavar="N", help="The weight matrix W<N> to draw.")
def viz_weights(checkpoint: str, output: str | None, layer: int) -> None:
    """Draw CHECKPOINT's weights into one PNG and print its path: on images each class's
    template (a linear model's rows of W1) or first-layer unit (an MLP's) as an image, on
    tables each class's largest weights with the inputs' names; --layer N > 1: W<N> as a
    heat map.

    Example: nncli viz weights runs/digits-linear-softmax/checkpoints/best.npz
    """
    from nncli.weightviz import plot_weights

    click.echo(str(plot_weights(checkpoint, output, layer).path))


@viz.command(name="confusion")
@click.argument("checkpoint", type=click.Path())
@click.argument("data", type=click.Path())
@click.option("-o", "--output", type=_PNG, default=None, metavar="FILE.png",
              help="Write the picture to FILE.png (default: RUN/confusion.png).")
@click.option("--normalize", is_flag=True, help="Each true class's row as shares of it.")
def viz_confusion(checkpoint: str, data: str, output: str | None, normalize: bool) -> None:
    """Draw CHECKPOINT's confusion matrix on labelled DATA (as eval scores it) into one PNG
    and print its path; counts in the cells up to 30 classes.

    Example: nncli viz confusion runs/digits-mlp/checkpoints/best.npz datasets/digits/test
    """
    from nncli.plots import plot_confusion

    click.echo(str(plot_confusion(checkpoint, data, output, normalize)))


@main.command()
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              metavar="FILE.html", help="Write the page to FILE.html (default: "
              "RUN_DIR/report.html).")
def report(run_dir: str, output: str | None) -> None:
    """Write RUN_DIR on one self-contained HTML page and print its path: the config, the
    curves, the final and best metrics, best.npz evaluated on the test data (else the
    validation or training data), the weights. A sweep folder (nncli sweep --out DIR) gives
    its ranked trials and the metric against each swept key. Needs matplotlib: pip install
    "nncli[plot]".

    Example: nncli report runs/digits-linear-softmax
    """
    from nncli.report import write_report

    click.echo(str(write_report(run_dir, output)))


class _SweepProgress:
    """sweep's stderr: one line per trial as it ends (``[3/4] trial-003 train.lr=0.1:
    done val_loss 0.1234``)."""

    metric = ""

    def on_start(self, folder: Any, metric: str, total: int, to_run: int) -> None:
        self.metric = metric
        click.echo(f"sweep: {total} trials ({to_run} to run) -> {folder}", err=True)

    def on_trial_end(self, done: int, total: int, trial: Any, row: Any, kept: bool) -> None:
        status = row.status if row is not None else "not run"
        text = f"[{done}/{total}] {trial.name} {trial.label()}: {status}"
        if row is not None and row.value is not None:
            text += f" {self.metric} {row.value:.4g}"
        if row is not None and row.error:
            text += f" ({_one_line(row.error)})"
        if kept:
            text += " (kept from an earlier sweep)"
        click.echo(text, err=True)


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--grid", "grids", multiple=True, metavar="KEY=V1,V2,...",
              help="Try each value of KEY (YAML-typed, as --set; repeatable: the grid is the "
                   "product).")
@click.option("--random", "random_n", type=click.IntRange(min=1), default=None, metavar="N",
              help="N random draws of the --log-uniform/--uniform ranges (seeded by the "
                   "config's seed), crossed with the grid.")
@click.option("--log-uniform", "log_uniform", multiple=True, metavar="KEY=LO:HI",
              help="Draw KEY log-uniformly from [LO, HI] (LO > 0), e.g. train.lr=1e-4:1e-1.")
@click.option("--uniform", "uniform", multiple=True, metavar="KEY=LO:HI",
              help="Draw KEY uniformly from [LO, HI].")
@set_option
@click.option("--workers", type=click.IntRange(min=1), default=None, metavar="K",
              help="Trials at once on this machine (default: one per core), each with "
                   "cores/K BLAS threads.")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local",
              show_default=True, help="Where trials run: worker processes here, or a Dask "
                                      "cluster (pip install \"nncli[dask]\").")
@click.option("--address", default=None, metavar="tcp://HOST:PORT",
              help="The Dask scheduler (with --engine dask).")
@click.option("--metric", type=click.Choice(["val_loss", "val_acc", "val_rmse", "loss"]),
              default=None, help="Rank by this metric of each trial's best epoch (default "
                                 "val_loss with validation data, else loss).")
@click.option("--out", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="The sweep folder (default runs/<name>-sweep).")
@json_option
def sweep(config: str, grids: tuple[str, ...], random_n: int | None,
          log_uniform: tuple[str, ...], uniform: tuple[str, ...], overrides: tuple[str, ...],
          workers: int | None, engine: str, address: str | None, metric: str | None,
          out: str | None, as_json: bool) -> None:
    """Train CONFIG once per point of a search space; rank the trials in DIR/sweep.csv.

    Each trial is a run directory DIR/trial-NNN; DIR/best.yaml is the best trial's config.
    The same command again skips finished trials and resumes interrupted ones; Ctrl-C stops
    the trials (each saves last.npz) and exits 130.

    Example: nncli sweep configs/digits-mlp.yaml --grid train.lr=1e-3,1e-2
    --grid reg.lambda=0,1e-4 --workers 2
    """
    from nncli.sweep import SweepRequest, build_space, run_sweep

    space = build_space(list(grids), list(log_uniform), list(uniform), random_n or 0)
    request = SweepRequest(config, space, list(overrides), workers, engine, address, metric,
                           out)
    result = run_sweep(request, _SweepProgress())
    if as_json:
        _echo_json(result.fields())
        return
    header = ["rank", "trial", *result.keys, "status", "best_epoch", result.metric]
    rows = [["" if row.fields(result.metric)[c] is None else
             (f"{row.fields(result.metric)[c]:.4g}" if c == result.metric
              else str(row.fields(result.metric)[c])) for c in header] for row in result.rows]
    click.echo(_table(rows, header))
    best = result.best
    click.echo(f"best: {best.trial} ({result.metric} {best.value:.4g}); its config: "
               f"{result.folder / 'best.yaml'}" if best else "best: none (no trial finished)",
               err=True)
    if best is None:
        sys.exit(1)


_restore_start_up_handlers()  # the import is over: main() installs its own handlers

if __name__ == "__main__":  # pragma: no cover
    main()
