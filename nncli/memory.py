"""Training memory, checked before anything is allocated: what a network of given widths
needs (:func:`training_bytes`), what this process may still take
(:func:`available_memory_bytes`), and the refusal naming ``model.hidden``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nncli.errors import NncliError

OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2}  # state arrays / param
OPTIMIZER_WORK = {"nesterov": 1, "adam": 1}  # a work array per parameter (Optimizer.step)


def training_bytes(sizes: Sequence[int], dtype: str | np.dtype, optimizer: str,
                   batch_cap: int) -> int:
    """What training a network of widths ``sizes`` ``[D, h1, ..., K]`` allocates, in bytes.

    With P parameters (W ``out x in`` and b per layer) of ``itemsize`` s: the weights,
    gradient work arrays (``dW`` and a scratch per W, ``db``), optimizer state (0, 1 or 2
    arrays per parameter, plus adam's and nesterov's work array), one copy of weights and
    state for the checkpoint of each epoch; the batch arrays of the training step
    (:class:`~nncli.nn.step.TrainingStep`; ``batch_cap`` rows: a ones vector, the input,
    every layer's output, two work arrays and a bool mask per hidden layer); and, when it
    is larger, the peak of initialization (the largest layer drawn in float64 and scaled:
    16 bytes per weight on top of the weights).
    """
    s = np.dtype(dtype).itemsize
    pairs = list(zip(sizes[:-1], sizes[1:]))
    weights = sum(int(i) * int(o) for i, o in pairs)
    params = weights + sum(int(o) for _, o in pairs)
    hidden = sum(int(h) for h in sizes[1:-1])
    slots = OPTIMIZER_SLOTS.get(optimizer, 2)
    per_param = 1 + slots + OPTIMIZER_WORK.get(optimizer, 0) + (1 + slots)  # live + copy
    gradients = 2 * weights + (params - weights)
    batch = batch_cap * ((1 + int(sizes[0]) + sum(int(o) for _, o in pairs) + 2 * hidden) * s
                         + hidden + 8)
    training = (per_param * params + gradients) * s + batch
    largest = max((int(i) * int(o) for i, o in pairs), default=0)
    return max(training, params * s + 16 * largest)


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def available_memory_bytes() -> int | None:
    """Memory this process may still take, in bytes, or None where that is unknown.

    Linux: ``MemAvailable`` of ``/proc/meminfo``, lowered by a cgroup memory limit
    (v2 ``memory.max - memory.current``, v1 ``memory.limit_in_bytes - usage``) and by an
    address-space limit (``ulimit -v``: the limit minus this process's ``VmSize``).
    """
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            fields = dict(line.split(":", 1) for line in handle if ":" in line)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return None
    for limit_file, usage_file in (
            ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
            ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
             "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2 ** 60:
            available = min(available, max(limit - usage, 0))
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/status", encoding="ascii") as status:
                size = next(int(line.split()[1]) * 1024 for line in status
                            if line.startswith("VmSize:"))
            available = min(available, max(soft - size, 0))
    except (ImportError, OSError, ValueError, StopIteration):
        pass
    return available


def memory_message(hidden: Sequence[int], sizes: Sequence[int], dtype: str, optimizer: str,
                   batch_cap: int, need: int, available: int | None) -> str:
    """The one-line refusal of a network that does not fit (``need`` bytes, see
    :func:`training_bytes`), naming ``model.hidden`` and the sizes in GB."""
    params = sum(int(i) * int(o) + int(o) for i, o in zip(sizes[:-1], sizes[1:]))
    have = (f"{available / 1e9:.1f} GB available" if available is not None else
            "allocating it failed (out of memory)")
    return (f"model.hidden {list(hidden)} needs {need / 1e9:.1f} GB for weights, gradients, "
            f"optimizer state and batch buffers ({params:,} parameters for "
            f"{sizes[0]} inputs and {sizes[-1]} outputs, {dtype}, {optimizer}, batch "
            f"{batch_cap}); {have}: choose a smaller model.hidden or train.batch_size")


def check_training_memory(hidden: Sequence[int], sizes: Sequence[int], dtype: str,
                          optimizer: str, batch_cap: int, allocated: int = 0) -> None:
    """Refuse (an :class:`~nncli.errors.NncliError` naming ``model.hidden``) a network whose
    training needs more memory than is available, ``allocated`` bytes of it already held
    (a resumed checkpoint's arrays). Where the available memory is unknown: no check."""
    need = training_bytes(sizes, dtype, optimizer, batch_cap)
    available = available_memory_bytes()
    if available is not None and need - allocated > available:
        raise NncliError(memory_message(hidden, sizes, dtype, optimizer, batch_cap, need,
                                        available + allocated))
