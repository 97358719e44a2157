"""The training loop: minibatch gradient descent with validation, checkpoints and logs.

:func:`train` runs a config end to end and writes its run directory. It never prints;
progress goes to an optional :class:`Progress` callback.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nncli.build import (
    class_weights,
    epoch_learning_rate,
    model_from_config,
    objective_from_config,
    optimizer_from_config,
    output_units,
    training_step,
)
from nncli.checkpoint import (
    Checkpoint,
    ResumeState,
    checkpoint_file,
    load_checkpoint,
    save_checkpoint,
)
from nncli.config import Config, check_run_name
from nncli.data import Dataset, TrainingData, load_training_data
from nncli.errors import DivergedError, NncliError
from nncli.interrupts import raise_if_interrupted
from nncli.memory import check_training_memory, memory_message, training_bytes
from nncli.metrics import evaluate, evaluate_regression
from nncli.nn.losses import DEFAULT_OBJECTIVE, Objective
from nncli.nn.model import MLP
from nncli.nn.optim import Optimizer
from nncli.rundir import (
    RunDir,
    check_rows,
    enclosing_run,
    holds_run,
    metric_columns,
    refuse_existing_run,
    run_dir_of_checkpoint,
)

if TYPE_CHECKING:  # pragma: no cover
    from nncli.parallel import MpiWorld, SingleProcess

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


@dataclass
class TrainState:
    """Where a run stands; the :class:`Trainer`'s steps read and advance it.

    ``epoch`` is the epoch in progress, or between epochs the last one done (at the start:
    the checkpoint's, 0 for a new run); ``step`` counts batches; ``rng`` shuffles them
    (stream ``[seed, 1]``). ``best_value``, ``best_epoch`` (its row ``best_row``) and
    ``wait`` are early stopping's; ``rows`` holds one metric row per epoch so far. The rest
    is what this process did: ``latest`` is the checkpoint of the last epoch done (in
    memory), ``last_saved_epoch``/``best_saved_epoch`` the epochs of last.npz/best.npz.
    """

    epoch: int
    step: int
    rng: np.random.Generator
    rows: list[dict[str, Any]]
    best_value: float | None = None
    best_epoch: int | None = None
    best_row: dict[str, Any] | None = None
    wait: int = 0
    latest: Checkpoint | None = None
    last_saved_epoch: int = 0
    best_saved_epoch: int | None = None
    train_seconds: float = 0.0  # in the batch loops (for samples_per_sec)
    samples_seen: int = 0

    @classmethod
    def begin(cls, seed: int, epoch: int = 0, step: int = 0,
              resume: ResumeState | None = None,
              rows: list[dict[str, Any]] | None = None) -> TrainState:
        """The state of a new run (seed only), or of one resumed from a checkpoint at
        ``epoch``/``step`` with ``resume`` and its checked ``rows``."""
        resume = resume or ResumeState()
        rows = list(rows or [])
        rng = np.random.default_rng([seed, 1])
        if resume.rng_state is not None:
            rng.bit_generator.state = resume.rng_state
        return cls(epoch=epoch, step=step, rng=rng, rows=rows, best_value=resume.best_value,
                   best_epoch=resume.best_epoch, wait=resume.wait,
                   best_row=next((r for r in rows if r["epoch"] == resume.best_epoch), None),
                   last_saved_epoch=epoch, best_saved_epoch=resume.best_epoch)

    def resume_state(self) -> ResumeState:
        """What a checkpoint of this state must carry to resume from it."""
        return ResumeState(rng_state=self.rng.bit_generator.state, best_value=self.best_value,
                           best_epoch=self.best_epoch, wait=self.wait, rows=list(self.rows))


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
    if old.task != cfg.task:
        problems.append(f"task {old.task} vs {cfg.task}")
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
    return es is not None and ckpt.resume.wait >= es["patience"]


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
        wait = ckpt.resume.wait
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
                 step: str = "auto", comm: SingleProcess | MpiWorld | None = None) -> None:
        self.model, self.optimizer, self.X, self.y = model, optimizer, X, y
        self.step = training_step(model, objective, batch_cap, step)
        self.y_buffer = np.empty(batch_cap, dtype=y.dtype)
        self.plain_sgd = optimizer.name == "sgd"
        # data-parallel training (nncli.parallel): each call trains this rank's slice
        self.parallel = None if comm is None else comm.step(self)

    def __call__(self, idx: np.ndarray, lr: float) -> tuple[float, float, int]:
        """Update the model on examples ``idx`` (M,) with rate ``lr``; returns (data loss,
        reg loss, correct predictions), all measured before the update."""
        if self.parallel is not None:
            return self.parallel(idx, lr)
        xb, yb = self.gather(idx)
        if self.plain_sgd:  # nothing needs the gradient: the step may fuse the update in
            return self.step.sgd_step(xb, yb, float(lr))
        d_loss, r_loss, correct, grads = self.step.gradients(xb, yb)
        if math.isfinite(d_loss + r_loss):
            # The gradients live in the step's arrays and are recomputed by the next step.
            self.optimizer.step(self.model.params, grads, lr, grads_are_scratch=True)
        return d_loss, r_loss, correct

    def gather(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``idx`` (M,) of X and y into the step's batch arrays: (M, D), (M,)."""
        m = len(idx)
        # Indices come from a permutation, so bounds checks are moot; mode="raise" would
        # also make take() copy through a temporary buffer (2-3x slower here).
        xb = self.X.take(idx, axis=0, out=self.step.batch_rows(m), mode="clip")
        yb = self.y.take(idx, out=self.y_buffer[:m], mode="clip")
        return xb, yb


def _batches(n: int, batch_size: int | str, rng: np.random.Generator,
             order_of: Callable[[np.random.Generator], np.ndarray] | None = None
             ) -> list[np.ndarray]:
    """An epoch's batches of row indices: ``order_of(rng)`` (the dataset's order, e.g. an
    array folder's block shuffle), by default ``rng.permutation(n)``, cut into batches."""
    if batch_size == "full":
        return [np.arange(n)]
    order = rng.permutation(n) if order_of is None else order_of(rng)
    return [order[i:i + batch_size] for i in range(0, n, int(batch_size))]


def train(cfg: Config, out: str | Path | None = None, resume: str | Path | None = None,
          progress: Progress | None = None, data: TrainingData | None = None,
          comm: SingleProcess | MpiWorld | None = None) -> TrainResult:
    """Train ``cfg``'s model and write its run directory; returns the summary and model.

    ``out`` is the run directory (default ``runs/<name>``, or ``runs/<name>-2``... if taken);
    ``resume`` a checkpoint or run directory to continue from. The run directory is locked
    for the whole run (a second writer is refused); everything that can refuse the run is
    checked, and the training buffers allocated, before anything is written, and a new run
    that ends before its first checkpoint leaves nothing behind.
    Raises :class:`DivergedError` on a non-finite loss and :class:`Interrupted` on Ctrl-C.
    ``comm`` (:mod:`nncli.parallel`) trains data-parallel over MPI: rank 0 opens and writes
    the run directory, the others write nothing; an error on any rank stops all.
    """
    from nncli.parallel import SINGLE_PROCESS

    comm = comm or SINGLE_PROCESS
    run = comm.run_dir(lambda: _open_run_dir(cfg, out, resume))
    try:
        return comm.together(Trainer, cfg, run, out, resume, progress, data, comm).fit()
    except BaseException:
        run.abandon_if_new()  # a new run without a checkpoint: leave no trace of it
        raise
    finally:
        run.release()


def _open_run_dir(cfg: Config, out: str | Path | None, resume: str | Path | None) -> RunDir:
    """The run directory to write: the one of checkpoint ``resume`` (locked now, so a run
    that still trains is refused before its files are read), or a new one."""
    if resume is not None:
        run = RunDir(run_dir_of_checkpoint(Path(resume)))
        run.lock()
        return run
    return RunDir(_new_run_dir(cfg, out))


def _restored_rows(ckpt: Checkpoint, run: RunDir, path: Path) -> list[dict[str, Any]]:
    """The metric rows up to the checkpoint's epoch, checked: those it carries (it is
    written before the row is appended to the logs, so the logs may lack its last row
    after a crash), or for a checkpoint without rows those of ``metrics.jsonl``."""
    rows = ckpt.resume.rows
    if rows is not None:
        source, complete = f"{checkpoint_file(path)}: damaged checkpoint", True
    else:
        source, complete = f"{run.path / 'metrics.jsonl'}: damaged metrics log", False
        rows = [r for r in run.read_metrics() if r["epoch"] <= ckpt.epoch]
    try:
        return check_rows(rows, ckpt.epoch, ckpt.step, complete, run.columns)
    except ValueError as exc:
        raise NncliError(f"{source} (invalid {exc})") from None


def _allocate(cfg: Config, ckpt: Checkpoint | None, data: TrainingData, batch_cap: int,
              objective: Objective, comm: SingleProcess | MpiWorld | None = None,
              ) -> tuple[MLP, Optimizer, MinibatchStep]:
    """The model, optimizer and training step with all their arrays, after checking that
    they fit in the available memory; a MemoryError is reported the same way. With a
    ``comm`` of several ranks the step is data-parallel."""
    X, y = data.train.X, data.train.y
    hidden = list(cfg.model.hidden)
    outputs = output_units(cfg.task, data.classes)
    sizes = [X.shape[1], *hidden, outputs]
    held = 0
    if ckpt is not None:
        held = sum(a.nbytes for a in ckpt.model.params.values()) + sum(
            a.nbytes for a in ckpt.optimizer_state.values())
    check_training_memory(hidden, sizes, cfg.train.dtype, cfg.train.optimizer, batch_cap, held)
    try:
        model = ckpt.model if ckpt is not None else model_from_config(cfg, X.shape[1], outputs)
        optimizer = optimizer_from_config(cfg)
        if ckpt is not None:
            optimizer.load_state_arrays(ckpt.optimizer_state)
        step = MinibatchStep(model, optimizer, X, y, batch_cap, objective, cfg.train.step,
                             comm)
    except MemoryError:
        need = training_bytes(sizes, cfg.train.dtype, cfg.train.optimizer, batch_cap)
        raise NncliError(memory_message(hidden, sizes, cfg.train.dtype, cfg.train.optimizer,
                                        batch_cap, need, None)) from None
    return model, optimizer, step


def _checkpoint_to_resume(cfg: Config, resume: Path | None, out: str | Path | None,
                          run: RunDir
                          ) -> tuple[Checkpoint | None, list[dict[str, Any]] | NncliError]:
    """The checkpoint ``resume`` names, checked to be resumable in its ``run``, and its
    checked metric rows, or the error that they are damaged (to raise after the checks
    against the data, which come first); (None, []) for a new run."""
    if resume is None:
        return None, []
    ckpt = load_checkpoint(resume)  # checks every array and all the resume state
    _resumable_run_dir(ckpt, cfg, resume, out)
    try:
        return ckpt, _restored_rows(ckpt, run, resume)
    except NncliError as exc:
        return ckpt, exc


def _best_metric(cfg: Config, data: TrainingData) -> str:
    """The metric that early stopping and best.npz follow (``train.early_stopping.metric``,
    else val_loss, else the training loss)."""
    es = cfg.train.early_stopping
    metric = es["metric"] if es else ("val_loss" if data.val is not None else "loss")
    if metric.startswith("val_") and data.val is None:
        raise NncliError("config key 'train.early_stopping.metric': "
                         f"'{metric}' needs validation data (set data.val or data.val_split)")
    return metric


class Trainer:
    """One run of minibatch gradient descent, in named steps (cs231n's ``Solver``).

    The constructor checks everything that can refuse the run and allocates the training
    arrays before anything is written; :meth:`fit` then runs :meth:`start`, per epoch
    :meth:`run_epoch` (:meth:`run_batches`, :meth:`validate`) and :meth:`after_epoch`, and
    :meth:`summarize`; :meth:`interrupted` and :meth:`diverged` finish the checkpoints of
    a run that ends early. All of the run's progress is in :attr:`state`
    (:class:`TrainState`). ``run`` is chosen (and, to resume, locked) by :func:`train`.
    With ``comm`` (:mod:`nncli.parallel`) of several ranks, rank 0 reads the checkpoint to
    resume and validates, and the others receive what it found; only rank 0 saves.
    """

    def __init__(self, cfg: Config, run: RunDir, out: str | Path | None = None,
                 resume: str | Path | None = None, progress: Progress | None = None,
                 data: TrainingData | None = None,
                 comm: SingleProcess | MpiWorld | None = None) -> None:
        from nncli.parallel import SINGLE_PROCESS

        self.wall_start = time.perf_counter()
        self.cfg, self.run, self.out = cfg, run, out
        self.comm = comm = comm or SINGLE_PROCESS
        run.columns = metric_columns(cfg.task)
        self.regression = cfg.task == "regression"
        self.progress = progress or Progress()
        resume = None if resume is None else Path(resume)
        ckpt, rows = comm.from_root(_checkpoint_to_resume, cfg, resume, out, run)
        data = self.data = data or load_training_data(cfg)
        self.metric = _best_metric(cfg, data)
        if ckpt is not None:
            _compatible(ckpt, cfg, data, resume)
        if isinstance(rows, NncliError):
            raise rows
        self.objective = objective_from_config(cfg, class_weights(cfg, data))
        n = self.n = data.train.X.shape[0]
        batch_cap = n if cfg.train.batch_size == "full" else min(n, int(cfg.train.batch_size))
        self.model, self.optimizer, self.train_step = _allocate(cfg, ckpt, data, batch_cap,
                                                                self.objective, comm)
        comm.broadcast_arrays(list(self.model.params.values()))  # rank 0's, to be sure
        self.fresh = ckpt is None
        if ckpt is None:
            self.state = TrainState.begin(cfg.seed)
        else:
            self.state = TrainState.begin(cfg.seed, ckpt.epoch, ckpt.step, ckpt.resume, rows)
        self.start_epoch = self.state.epoch
        # A resumed run that had stopped early only needs its summary written.
        self.last_epoch = self.start_epoch if ckpt is not None and _stopped_early(ckpt, cfg) \
            else cfg.train.epochs

    def fit(self) -> TrainResult:
        """Train to ``train.epochs`` (or an early stop) and write the summary. Raises
        :class:`DivergedError` on a non-finite loss and :class:`Interrupted` on Ctrl-C."""
        self.comm.together(self.start)  # rank 0 claims the run directory: all go, or none
        # Overflow is detected (and reported once) through the loss check of each batch.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            try:
                while self.state.epoch < self.last_epoch:
                    if self.after_epoch(self.run_epoch()):
                        break
            except KeyboardInterrupt:
                raise self.interrupted() from None
            except DivergedError:
                self.diverged()
                raise
        return self.summarize()

    def start(self) -> None:
        """Every check has passed: claim the run directory, write the config and the
        metric logs so far."""
        fresh, run = self.fresh, self.run
        run.claim(fresh=fresh, pick_free=fresh and self.out is None)
        run.write_config(self.cfg.to_yaml())
        run.start_metrics(rows=self.state.rows)
        self.progress.on_train_start(run.path, self.n, self.start_epoch, self.cfg.train.epochs)

    def run_epoch(self) -> dict[str, Any]:
        """Train the next epoch and validate; returns its metric row."""
        cfg, state, n = self.cfg, self.state, self.n
        state.epoch += 1
        epoch_start = time.perf_counter()
        lr = epoch_learning_rate(cfg, state.epoch)
        self.progress.on_epoch_start(state.epoch, cfg.train.epochs, n)
        sum_data, sum_reg, sum_correct = self.run_batches(lr)
        state.train_seconds += time.perf_counter() - epoch_start
        state.samples_seen += n
        if not all(np.isfinite(p).all() for p in self.model.params.values()):
            raise DivergedError(f"weights became non-finite at epoch {state.epoch}, step "
                                f"{state.step} — try a smaller train.lr (now {cfg.train.lr:g})")
        # regression: the root of the epoch's pooled MSE, in the target's units
        train_score = math.sqrt(sum_data / n) * self.data.target_scale if self.regression \
            else sum_correct / n
        train_key, val_key = ("train_rmse", "val_rmse") if self.regression else (
            "train_acc", "val_acc")
        row: dict[str, Any] = {
            "epoch": state.epoch, "step": state.step, "lr": lr,
            "loss": (sum_data + sum_reg) / n, "data_loss": sum_data / n,
            "reg_loss": sum_reg / n, train_key: train_score,
            "val_loss": None, val_key: None,
        }
        self.validate(row)
        row["seconds"] = time.perf_counter() - epoch_start
        return row

    def run_batches(self, lr: float) -> tuple[float, float, int]:
        """One pass over the training set in shuffled batches at rate ``lr``; returns the
        data loss and reg loss, each summed over the examples, and the correct predictions."""
        state, train_step, progress = self.state, self.train_step, self.progress
        sum_data, sum_reg, sum_correct = 0.0, 0.0, 0
        for idx in _batches(self.n, self.cfg.train.batch_size, state.rng,
                            self.data.train.order):
            m = len(idx)
            d_loss, r_loss, correct = train_step(idx, lr)
            if not math.isfinite(d_loss + r_loss):
                raise DivergedError(
                    f"loss became {d_loss + r_loss} at epoch {state.epoch}, step "
                    f"{state.step + 1} — try a smaller train.lr (now {self.cfg.train.lr:g})")
            sum_data += d_loss * m
            sum_reg += r_loss * m
            sum_correct += correct
            state.step += 1
            # A signal whose KeyboardInterrupt was swallowed (in C code, or in a finalizer
            # that happened to run when it arrived) stops the run here, at the next batch.
            raise_if_interrupted()
            progress.on_batch(m, d_loss + r_loss)
        return sum_data, sum_reg, sum_correct

    def validate(self, row: dict[str, Any]) -> None:
        """Fill ``row``'s val_loss and val_acc (val_rmse) on the validation split, if there is
        one (data-parallel: rank 0's figures on every rank, so all stop early alike)."""
        row.update(self.comm.from_root(self._validation))

    def _validation(self) -> dict[str, float]:
        data = self.data
        if data.val is not None and self.regression:
            scored = evaluate_regression(self.model, data.val.X, data.val.y, self.objective,
                                         data.target_shift, data.target_scale)
            return {"val_loss": scored.loss, "val_rmse": scored.rmse}
        if data.val is not None:
            result = evaluate(self.model, data.val.X, data.val.y, self.objective)
            return {"val_loss": result.loss, "val_acc": result.accuracy}
        return {}

    def after_epoch(self, row: dict[str, Any]) -> bool:
        """Record the epoch's ``row``: early stopping's best and patience, the checkpoints,
        then the logs and progress. Returns whether to stop early."""
        from nncli.testhooks import pause_here

        cfg, state, run, es = self.cfg, self.state, self.run, self.cfg.train.early_stopping
        epoch = state.epoch
        state.rows.append(row)
        improved = _improved(self.metric, row[self.metric], state.best_value,
                             es["min_delta"] if es else 0.0)
        if improved:
            state.best_value, state.best_epoch, state.best_row = row[self.metric], epoch, row
            state.wait = 0
        else:
            state.wait += 1
        # Checkpoints first, then the log row: whatever moment a crash or Ctrl-C hits,
        # last.npz (which carries the rows) is never behind the logs' claims.
        latest = state.latest = self.snapshot()
        if improved:
            self.save(run.best, latest)
            state.best_saved_epoch = epoch
        stop = es is not None and state.wait >= es["patience"]
        if epoch % cfg.train.checkpoint_every == 0 or epoch == cfg.train.epochs or stop:
            self.save(run.last, latest)
            state.last_saved_epoch = epoch
        run.append_metrics(row)
        self.progress.on_epoch_end(row)
        if epoch == self.start_epoch + 1:
            pause_here("train")  # tests: signal a run that holds its checkpoints
        return stop

    def save(self, path: Path, ckpt: Checkpoint) -> None:
        """Write checkpoint ``ckpt`` to ``path`` (rank 0 only, in data-parallel training)."""
        if self.comm.is_root:
            save_checkpoint(path, ckpt)

    def snapshot(self) -> Checkpoint:
        """The checkpoint of the run as it stands (copies of the arrays)."""
        model, data, state = self.model, self.data, self.state
        return Checkpoint(
            model=MLP({k: v.copy(order="K") for k, v in model.params.items()},
                      model.activation_name),
            config=self.cfg, classes=data.classes, input_shape=data.input_shape,
            normalization=data.normalization, epoch=state.epoch, step=state.step,
            optimizer_state=self.optimizer.state_arrays(),  # already copies
            resume=state.resume_state(), features=data.features, data_kind=data.kind,
            class_weights=self.objective.class_weights, encoding=data.encoding,
            target_shift=data.target_shift if self.regression else None,
            target_scale=data.target_scale if self.regression else None,
        )

    def interrupted(self) -> Interrupted:
        """After Ctrl-C: finish the checkpoints and logs of the last epoch done; returns
        the error to raise, saying where the run stopped and how to resume it."""
        state, run = self.state, self.run
        latest, epoch = state.latest, state.epoch
        # An interrupt may land inside a checkpoint write (which is then abandoned, leaving
        # the old file): finish both, so best.npz agrees with last.npz's best_epoch.
        if (latest is not None and state.best_epoch == latest.epoch
                and state.best_saved_epoch != state.best_epoch):
            self.save(run.best, latest)
        if latest is not None and state.last_saved_epoch < latest.epoch:
            self.save(run.last, latest)
        if latest is not None:  # the logs match last.npz even if the row was not appended
            run.start_metrics(rows=latest.resume.rows)
        # A fresh run's folder held no checkpoint before it (it is locked and was
        # checked to hold no run), so last.npz is this run's own.
        where = run.last if run.last.exists() else None
        hint = (f"; resume with --resume {where}" if where else
                " before the first epoch ended; nothing was kept")
        # Ctrl-C after an epoch's checkpoint but before its row was shown: that epoch
        # is complete and saved.
        when = (f"after epoch {epoch}" if latest is not None and latest.epoch == epoch
                else f"during epoch {epoch}")
        return Interrupted(f"interrupted {when}{hint}")

    def diverged(self) -> None:
        """After a non-finite loss: keep the last good epoch in last.npz."""
        latest = self.state.latest
        if latest is not None and self.state.last_saved_epoch < latest.epoch:
            self.save(self.run.last, latest)

    def summarize(self) -> TrainResult:
        """Write ``summary.json`` (with the test split's metrics of best.npz, if there is a
        test split) and return it with the model and the metric rows."""
        cfg, state, run, es = self.cfg, self.state, self.run, self.cfg.train.early_stopping
        rows = state.rows
        completed = rows[-1]["epoch"] if rows else self.start_epoch
        summary: dict[str, Any] = {
            "epochs": completed,
            "best_epoch": state.best_epoch,
            "final": rows[-1] if rows else None,
            "best": state.best_row,
            "wall_seconds": time.perf_counter() - self.wall_start,
            "samples_per_sec": (state.samples_seen / state.train_seconds
                                if state.train_seconds > 0 else None),
            "stopped_early": bool(es is not None and completed < cfg.train.epochs),
            "best_metric": self.metric,
            "run_dir": str(run.path),
            "peak_rss_mb": peak_rss_mb(),
        }
        if self.comm.size > 1:  # samples_per_sec is the world's: n rows per epoch
            summary["world_size"] = self.comm.size
        # only a run that used all its epochs (not one stopped early) can be "not converged"
        summary["converged"] = completed < cfg.train.epochs or _converged(cfg, rows)
        if self.data.test is not None and self.comm.is_root and run.best.exists():
            summary["test"] = holdout_metrics(load_checkpoint(run.best).model, self.data,
                                              self.objective)
        run.write_summary(summary)
        return TrainResult(run.path, summary, self.model, rows)


def _converged(cfg: Config, rows: list[dict[str, Any]]) -> bool:
    """False, with a warning, when the training loss of a run that used all its epochs was
    still clearly falling at the end (:func:`still_falling`)."""
    falling = still_falling([r["loss"] for r in rows], cfg.train.epochs)
    if falling is None:
        return True
    before, now, window = falling
    log.warning("the training loss was still falling at the last epoch (%.4g -> %.4g over "
                "the last %d epochs): the model may not have converged; raise "
                "train.epochs (now %d) or train.lr (now %g)", before, now, window,
                cfg.train.epochs, cfg.train.lr)
    return False


def holdout_metrics(model: MLP, data: TrainingData, objective: Objective) -> dict[str, float]:
    """Loss and accuracy (for regression: SPEC's eval metrics) of ``model`` on the test split
    of ``data`` (as in ``summary.json``'s ``test``)."""
    dataset: Dataset = data.test  # type: ignore[assignment]
    if data.task == "regression":
        return evaluate_regression(model, dataset.X, dataset.y, objective, data.target_shift,
                                   data.target_scale).fields()
    result = evaluate(model, dataset.X, dataset.y, objective)
    return {"n": result.n, "loss": result.loss, "data_loss": result.data_loss,
            "reg_loss": result.reg_loss, "accuracy": result.accuracy}
