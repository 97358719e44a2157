"""The training loop: minibatch gradient descent with validation, checkpoints and logs.

:func:`train` runs a config end to end and writes its run directory. It never prints;
progress goes to an optional :class:`Progress` callback.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nncli.build import class_weights, model_from_config, objective_from_config, training_step
from nncli.checkpoint import Checkpoint, checkpoint_file, load_checkpoint, save_checkpoint
from nncli.config import Config, check_run_name
from nncli.data import Dataset, TrainingData, load_training_data
from nncli.errors import DivergedError, NncliError
from nncli.interrupts import raise_if_interrupted
from nncli.memory import check_training_memory, memory_message, training_bytes
from nncli.metrics import evaluate
from nncli.nn.losses import DEFAULT_OBJECTIVE, Objective
from nncli.nn.model import MLP
from nncli.nn.optim import Optimizer, learning_rate
from nncli.rundir import (
    RunDir,
    check_rows,
    enclosing_run,
    holds_run,
    refuse_existing_run,
    run_dir_of_checkpoint,
)

log = logging.getLogger("nncli")


class Progress:
    """Callback interface for progress reporting; every method is optional to override."""

    def on_train_start(self, run_dir: Path, n_train: int, start_epoch: int,
                       epochs: int) -> None: ...

    def on_epoch_start(self, epoch: int, epochs: int, n_samples: int) -> None: ...

    def on_batch(self, n_samples: int, loss: float) -> None: ...

    def on_epoch_end(self, row: dict[str, Any]) -> None: ...


class Interrupted(NncliError):
    """SIGINT/SIGTERM during training; ``last.npz`` has been written. Exit 130."""

    exit_code = 130


@dataclass
class TrainResult:
    run_dir: Path
    summary: dict[str, Any]
    model: MLP
    rows: list[dict[str, Any]] = field(default_factory=list)


def _improved(metric: str, value: float | None, best: float | None, min_delta: float) -> bool:
    if value is None or not np.isfinite(value):
        return False
    if best is None:
        return True
    if metric == "val_acc":
        return value > best + min_delta
    return value < best - min_delta


def _compatible(ckpt: Checkpoint, cfg: Config, data: TrainingData, path: Path) -> None:
    """A resumed checkpoint must describe the same network and data as the config."""
    old = ckpt.config
    problems = []
    if tuple(old.model.hidden) != tuple(cfg.model.hidden):
        problems.append(f"model.hidden {list(old.model.hidden)} vs {list(cfg.model.hidden)}")
    if old.model.activation != cfg.model.activation:
        problems.append(f"model.activation {old.model.activation} vs {cfg.model.activation}")
    if ckpt.classes != data.classes:
        problems.append("the classes differ")
    if tuple(ckpt.input_shape) != tuple(data.input_shape):
        problems.append(f"input shape {ckpt.input_shape} vs {data.input_shape}")
    if str(ckpt.model.dtype) != cfg.train.dtype:
        problems.append(f"train.dtype {ckpt.model.dtype} vs {cfg.train.dtype}")
    if problems:
        raise NncliError(f"{path}: cannot resume with this config: " + "; ".join(problems))


def _new_run_dir(cfg: Config, out: str | Path | None) -> Path:
    """The run directory of a new run: ``out``, which must not hold a run already, or
    ``runs/<name>``, from which :meth:`RunDir.claim` takes the first free of it,
    ``runs/<name>-2``, ... when training starts. The name must be one folder name."""
    if out is None:
        check_run_name(cfg.name, "name")  # also the default, the config file's stem
        return Path("runs") / cfg.name
    path = Path(out)
    if holds_run(path):
        raise refuse_existing_run(path)
    inside = enclosing_run(path)
    if inside is not None:
        raise NncliError(f"{path}: is inside the run {inside}; choose a folder outside it")
    return path


def _stopped_early(ckpt: Checkpoint, cfg: Config) -> bool:
    """The checkpoint's early-stopping state has already run out of patience."""
    es = cfg.train.early_stopping
    return es is not None and int(ckpt.extra.get("wait", 0)) >= es["patience"]


def _resumable_run_dir(ckpt: Checkpoint, cfg: Config, path: Path,
                       out: str | Path | None) -> Path:
    """The run directory ``--resume path`` continues: the checkpoint's own. Refuses
    ``--out``, and a run that has nothing left to do. A checkpoint at its last epoch whose
    run has no summary of that epoch yet (a crash or Ctrl-C came after the checkpoint) is
    accepted: resuming then only finishes the run."""
    run_path = run_dir_of_checkpoint(path)
    if out is not None:
        raise NncliError(f"--resume continues the run that {path} belongs to ({run_path}); "
                         f"drop --out (to start a new run elsewhere, leave out --resume)")
    finished = (RunDir(run_path).finished_epochs() or 0) >= ckpt.epoch
    if ckpt.epoch > cfg.train.epochs or (ckpt.epoch == cfg.train.epochs and finished):
        raise NncliError(f"{path}: the run has already reached train.epochs "
                         f"({ckpt.epoch} of {cfg.train.epochs}); to train longer, resume "
                         f"with --set train.epochs=N (N > {ckpt.epoch})")
    if _stopped_early(ckpt, cfg) and finished:
        es = cfg.train.early_stopping or {}
        wait = int(ckpt.extra.get("wait", 0))
        raise NncliError(f"{path}: the run stopped early at epoch {ckpt.epoch} "
                         f"({wait} epochs without improvement, train.early_stopping.patience "
                         f"{es.get('patience')}); to train on, resume with "
                         f"--set train.early_stopping.patience=N (N > {wait})")
    return run_path


FALLING_WINDOW = 0.1  # judge by the last tenth of a run's epochs (at least 2)
FALLING_SHARE = 0.01  # a fall smaller than this share of the run's whole fall is noise
FALLING_LEFT = 0.1  # warn when the projected further fall exceeds this share of the loss ...
FALLING_LEFT_MIN = 0.01  # ... and this much in absolute terms


def still_falling(losses: list[float], epochs: int) -> tuple[float, float, int] | None:
    """(loss before, loss now, window) when the training loss ``losses`` (one per epoch)
    was still clearly falling at the end of a run of ``epochs`` epochs, else None.

    Over the last ``w`` epochs (a tenth of the run, at least 2) the loss must have fallen
    to its lowest value, by more than 1% of its fall over the whole run; and the fall
    still to come, projected geometrically from the last two windows (falls ``d1`` then
    ``d2``, ratio ``r = d2 / d1``: ``d2 r / (1 - r)``, unbounded when ``r >= 1``), must
    exceed 10% of the loss and 0.01. A curve that has levelled off, or that creeps
    towards 0 on separable data, has little left to fall; a steady descent has no end in
    sight.
    """
    w = max(2, round(FALLING_WINDOW * epochs))
    if len(losses) < 2 * w + 1 or not all(math.isfinite(v) for v in losses):
        return None
    two_back, before, now = losses[-2 * w - 1], losses[-w - 1], losses[-1]
    d1, d2 = two_back - before, before - now
    fall = losses[0] - now
    if fall <= 0 or now > min(losses[-w - 1:]) or d2 <= FALLING_SHARE * fall:
        return None
    ratio = d2 / d1 if d1 > 0 else math.inf
    left = d2 * ratio / (1 - ratio) if ratio < 1 else math.inf
    if left > max(FALLING_LEFT * now, FALLING_LEFT_MIN):
        return before, now, w
    return None


def peak_rss_mb() -> float | None:
    """This process's peak resident memory in MiB (Linux VmHWM; else getrusage), or None."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource

        scale = 1024 if sys.platform != "darwin" else 1024 * 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
    except (ImportError, OSError):
        return None


class MinibatchStep:
    """One gradient-descent step on rows ``idx`` of the training set, allocation-free.

    X: (N, D), y: (N,). The batch is gathered into the training step's preallocated input
    (``step``: a kind of :func:`~nncli.build.training_step`), which computes the gradients
    of ``objective`` into its own arrays; the optimizer then updates the model.
    """

    def __init__(self, model: MLP, optimizer: Optimizer, X: np.ndarray, y: np.ndarray,
                 batch_cap: int, objective: Objective = DEFAULT_OBJECTIVE,
                 step: str = "auto") -> None:
        self.model, self.optimizer, self.X, self.y = model, optimizer, X, y
        self.step = training_step(model, objective, batch_cap, step)
        self.y_buffer = np.empty(batch_cap, dtype=y.dtype)
        self.plain_sgd = optimizer.name == "sgd"

    def __call__(self, idx: np.ndarray, lr: float) -> tuple[float, float, int]:
        """Update the model on examples ``idx`` (M,) with rate ``lr``; returns (data loss,
        reg loss, correct predictions), all measured before the update."""
        m = len(idx)
        # Indices come from a permutation, so bounds checks are moot; mode="raise" would
        # also make take() copy through a temporary buffer (2-3x slower here).
        xb = self.X.take(idx, axis=0, out=self.step.batch_rows(m), mode="clip")
        yb = self.y.take(idx, out=self.y_buffer[:m], mode="clip")
        if self.plain_sgd:  # nothing needs the gradient: the step may fuse the update in
            return self.step.sgd_step(xb, yb, float(lr))
        d_loss, r_loss, correct, grads = self.step.gradients(xb, yb)
        if math.isfinite(d_loss + r_loss):
            # The gradients live in the step's arrays and are recomputed by the next step.
            self.optimizer.step(self.model.params, grads, lr, grads_are_scratch=True)
        return d_loss, r_loss, correct


def _batches(n: int, batch_size: int | str, rng: np.random.Generator) -> list[np.ndarray]:
    if batch_size == "full":
        return [np.arange(n)]
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, int(batch_size))]


def train(cfg: Config, out: str | Path | None = None, resume: str | Path | None = None,
          progress: Progress | None = None, data: TrainingData | None = None) -> TrainResult:
    """Train ``cfg``'s model and write its run directory; returns the summary and model.

    ``out`` is the run directory (default ``runs/<name>``, or ``runs/<name>-2``... if taken);
    ``resume`` a checkpoint or run directory to continue from. The run directory is locked
    for the whole run (a second writer is refused); everything that can refuse the run is
    checked, and the training buffers allocated, before anything is written, and a new run
    that ends before its first checkpoint leaves nothing behind.
    Raises :class:`DivergedError` on a non-finite loss and :class:`Interrupted` on Ctrl-C.
    """
    if resume is not None:
        run = RunDir(run_dir_of_checkpoint(Path(resume)))
        run.lock()  # first: a run that still trains is refused before its files are read
    else:
        run = RunDir(_new_run_dir(cfg, out))
    try:
        return _train(cfg, run, out, resume, progress or Progress(), data)
    except BaseException:
        run.abandon_if_new()  # a new run without a checkpoint: leave no trace of it
        raise
    finally:
        run.release()


def _restored_rows(ckpt: Checkpoint, run: RunDir, path: Path) -> list[dict[str, Any]]:
    """The metric rows up to the checkpoint's epoch, checked: those it carries (it is
    written before the row is appended to the logs, so the logs may lack its last row
    after a crash), or for a checkpoint without rows those of ``metrics.jsonl``."""
    rows = ckpt.extra.get("rows")
    if rows is not None:
        source, complete = f"{checkpoint_file(path)}: damaged checkpoint", True
    else:
        source, complete = f"{run.path / 'metrics.jsonl'}: damaged metrics log", False
        rows = [r for r in run.read_metrics() if r["epoch"] <= ckpt.epoch]
    try:
        return check_rows(rows, ckpt.epoch, ckpt.step, complete)
    except ValueError as exc:
        raise NncliError(f"{source} (invalid {exc})") from None


def _allocate(cfg: Config, ckpt: Checkpoint | None, data: TrainingData, batch_cap: int,
              weights: np.ndarray | None) -> tuple[MLP, Optimizer, MinibatchStep]:
    """The model, optimizer and training step with all their arrays, after checking that
    they fit in the available memory; a MemoryError is reported the same way."""
    X, y = data.train.X, data.train.y
    hidden = list(cfg.model.hidden)
    sizes = [X.shape[1], *hidden, len(data.classes)]
    held = 0
    if ckpt is not None:
        held = sum(a.nbytes for a in ckpt.model.params.values()) + sum(
            a.nbytes for a in ckpt.optimizer_state.values())
    check_training_memory(hidden, sizes, cfg.train.dtype, cfg.train.optimizer, batch_cap, held)
    try:
        model = ckpt.model if ckpt is not None else model_from_config(cfg, X.shape[1],
                                                                      len(data.classes))
        optimizer = Optimizer(cfg.train.optimizer, cfg.train.momentum)
        if ckpt is not None:
            optimizer.load_state_arrays(ckpt.optimizer_state)
        step = MinibatchStep(model, optimizer, X, y, batch_cap,
                             objective_from_config(cfg, weights), cfg.train.step)
    except MemoryError:
        need = training_bytes(sizes, cfg.train.dtype, cfg.train.optimizer, batch_cap)
        raise NncliError(memory_message(hidden, sizes, cfg.train.dtype, cfg.train.optimizer,
                                        batch_cap, need, None)) from None
    return model, optimizer, step


def _train(cfg: Config, run: RunDir, out: str | Path | None, resume: str | Path | None,
           progress: Progress, data: TrainingData | None) -> TrainResult:
    """:func:`train` once the run directory is chosen (and, to resume, locked)."""
    from nncli.testhooks import pause_here

    wall_start = time.perf_counter()
    # Everything that can refuse the run is checked before anything is written.
    ckpt: Checkpoint | None = None
    if resume is not None:
        resume = Path(resume)
        ckpt = load_checkpoint(resume)  # checks every array and all the resume state
        _resumable_run_dir(ckpt, cfg, resume, out)
    data = data or load_training_data(cfg)
    es = cfg.train.early_stopping
    metric = es["metric"] if es else ("val_loss" if data.val is not None else "loss")
    if metric.startswith("val_") and data.val is None:
        raise NncliError("config key 'train.early_stopping.metric': "
                         f"'{metric}' needs validation data (set data.val or data.val_split)")
    if ckpt is not None:
        _compatible(ckpt, cfg, data, resume)
    weights = class_weights(cfg, data)
    X = data.train.X
    n = X.shape[0]
    batch_cap = n if cfg.train.batch_size == "full" else min(n, int(cfg.train.batch_size))
    model, optimizer, train_step = _allocate(cfg, ckpt, data, batch_cap, weights)
    if ckpt is not None:
        start_epoch, step = ckpt.epoch, ckpt.step
        state = ckpt.extra
        previous_rows = _restored_rows(ckpt, run, resume)
    else:
        start_epoch, step, state = 0, 0, {}
        previous_rows = []
    rng = np.random.default_rng([cfg.seed, 1])
    if "rng_state" in state:
        rng.bit_generator.state = state["rng_state"]
    best_value: float | None = state.get("best_value")
    best_epoch: int | None = state.get("best_epoch")
    wait: int = int(state.get("wait", 0))
    best_row = next((r for r in previous_rows if r["epoch"] == best_epoch), None)

    # Every check has passed: from here on the run directory is written.
    run.claim(fresh=ckpt is None, pick_free=ckpt is None and out is None)
    run.write_config(cfg.to_yaml())
    run.start_metrics(rows=previous_rows)

    def snapshot(epoch: int) -> Checkpoint:
        return Checkpoint(
            model=MLP({k: v.copy(order="K") for k, v in model.params.items()},
                      model.activation_name),
            config=cfg, classes=data.classes, input_shape=data.input_shape,
            normalization=data.normalization, epoch=epoch, step=step,
            optimizer_state=optimizer.state_arrays(),  # already copies
            extra={"rng_state": rng.bit_generator.state, "best_value": best_value,
                   "best_epoch": best_epoch, "wait": wait, "features": data.features,
                   "data_kind": data.kind,
                   "class_weights": weights.tolist() if weights is not None else None,
                   "rows": list(rows)},
        )

    rows: list[dict[str, Any]] = list(previous_rows)
    last_saved_epoch = start_epoch
    best_saved_epoch = best_epoch
    latest: Checkpoint | None = None
    train_seconds = 0.0
    samples_seen = 0
    epoch = start_epoch
    # A resumed run that had stopped early only needs its summary written.
    last_epoch = start_epoch if ckpt is not None and _stopped_early(ckpt, cfg) else (
        cfg.train.epochs)
    progress.on_train_start(run.path, n, start_epoch, cfg.train.epochs)
    # Overflow is detected (and reported once) through the loss check below.
    errstate = np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore")
    errstate.__enter__()
    try:
        for epoch in range(start_epoch + 1, last_epoch + 1):
            epoch_start = time.perf_counter()
            lr = learning_rate(cfg.train.lr, cfg.train.lr_schedule, epoch, cfg.train.epochs)
            progress.on_epoch_start(epoch, cfg.train.epochs, n)
            # data loss, reg loss, correct — each weighted by batch size
            sum_data, sum_reg, sum_correct = 0.0, 0.0, 0
            for idx in _batches(n, cfg.train.batch_size, rng):
                m = len(idx)
                d_loss, r_loss, correct = train_step(idx, lr)
                if not math.isfinite(d_loss + r_loss):
                    raise DivergedError(
                        f"loss became {d_loss + r_loss} at epoch {epoch}, step {step + 1} — "
                        f"try a smaller train.lr (now {cfg.train.lr:g})")
                sum_data += d_loss * m
                sum_reg += r_loss * m
                sum_correct += correct
                step += 1
                # A signal whose KeyboardInterrupt was swallowed (in C code, or in a finalizer
                # that happened to run when it arrived) stops the run here, at the next batch.
                raise_if_interrupted()
                progress.on_batch(m, d_loss + r_loss)
            train_seconds += time.perf_counter() - epoch_start
            samples_seen += n
            if not all(np.isfinite(p).all() for p in model.params.values()):
                raise DivergedError(f"weights became non-finite at epoch {epoch}, step {step} — "
                                    f"try a smaller train.lr (now {cfg.train.lr:g})")
            row: dict[str, Any] = {
                "epoch": epoch, "step": step, "lr": lr,
                "loss": (sum_data + sum_reg) / n, "data_loss": sum_data / n,
                "reg_loss": sum_reg / n, "train_acc": sum_correct / n,
                "val_loss": None, "val_acc": None,
            }
            if data.val is not None:
                result = evaluate(model, data.val.X, data.val.y,
                                  objective_from_config(cfg, weights))
                row["val_loss"], row["val_acc"] = result.loss, result.accuracy
            row["seconds"] = time.perf_counter() - epoch_start
            rows.append(row)

            improved = _improved(metric, row[metric], best_value, es["min_delta"] if es else 0.0)
            if improved:
                best_value, best_epoch, best_row, wait = row[metric], epoch, row, 0
            else:
                wait += 1
            # Checkpoints first, then the log row: whatever moment a crash or Ctrl-C hits,
            # last.npz (which carries the rows) is never behind the logs' claims.
            latest = snapshot(epoch)
            if improved:
                save_checkpoint(run.best, latest)
                best_saved_epoch = epoch
            stop = es is not None and wait >= es["patience"]
            if epoch % cfg.train.checkpoint_every == 0 or epoch == cfg.train.epochs or stop:
                save_checkpoint(run.last, latest)
                last_saved_epoch = epoch
            run.append_metrics(row)
            progress.on_epoch_end(row)
            if epoch == start_epoch + 1:
                pause_here("train")  # tests: signal a run that holds its checkpoints
            if stop:
                break
    except KeyboardInterrupt:
        # An interrupt may land inside a checkpoint write (which is then abandoned, leaving
        # the old file): finish both, so best.npz agrees with last.npz's best_epoch.
        if latest is not None and best_epoch == latest.epoch and best_saved_epoch != best_epoch:
            save_checkpoint(run.best, latest)
        if latest is not None and last_saved_epoch < latest.epoch:
            save_checkpoint(run.last, latest)
        if latest is not None:  # the logs match last.npz even if the row was not appended
            run.start_metrics(rows=latest.extra["rows"])
        # A fresh run's folder held no checkpoint before it (it is locked and was
        # checked to hold no run), so last.npz is this run's own.
        where = run.last if run.last.exists() else None
        hint = (f"; resume with --resume {where}" if where else
                " before the first epoch ended; nothing was kept")
        # Ctrl-C after an epoch's checkpoint but before its row was shown: that epoch
        # is complete and saved.
        when = (f"after epoch {epoch}" if latest is not None and latest.epoch == epoch
                else f"during epoch {epoch}")
        raise Interrupted(f"interrupted {when}{hint}") from None
    except DivergedError:
        if latest is not None and last_saved_epoch < latest.epoch:
            save_checkpoint(run.last, latest)
        raise
    finally:
        errstate.__exit__(None, None, None)

    completed = rows[-1]["epoch"] if rows else start_epoch
    final_row = rows[-1] if rows else None
    summary: dict[str, Any] = {
        "epochs": completed,
        "best_epoch": best_epoch,
        "final": final_row,
        "best": best_row,
        "wall_seconds": time.perf_counter() - wall_start,
        "samples_per_sec": samples_seen / train_seconds if train_seconds > 0 else None,
        "stopped_early": bool(es is not None and completed < cfg.train.epochs),
        "best_metric": metric,
        "run_dir": str(run.path),
        "peak_rss_mb": peak_rss_mb(),
    }
    # only a run that used all its epochs (not one stopped early) can be "not converged"
    falling = (None if completed < cfg.train.epochs else
               still_falling([r["loss"] for r in rows], cfg.train.epochs))
    summary["converged"] = falling is None
    if falling is not None:
        before, now, window = falling
        log.warning("the training loss was still falling at the last epoch (%.4g -> %.4g over "
                    "the last %d epochs): the model may not have converged; raise "
                    "train.epochs (now %d) or train.lr (now %g)", before, now, window,
                    cfg.train.epochs, cfg.train.lr)
    if data.test is not None and run.best.exists():
        summary["test"] = holdout_metrics(load_checkpoint(run.best).model, data.test, cfg, weights)
    run.write_summary(summary)
    return TrainResult(run.path, summary, model, rows)


def holdout_metrics(model: MLP, dataset: Dataset, cfg: Config,
                 weights: np.ndarray | None) -> dict[str, float]:
    """Loss and accuracy of ``model`` on a held-out split (as in ``summary.json``'s ``test``)."""
    result = evaluate(model, dataset.X, dataset.y, objective_from_config(cfg, weights))
    return {"n": result.n, "loss": result.loss, "data_loss": result.data_loss,
            "reg_loss": result.reg_loss, "accuracy": result.accuracy}
