"""Signals and processes: SIGINT/SIGTERM in every phase end with exit 130 and one line;
decode workers die with their parent; image folders that are deep, hold symlinks back
inside, or hold formats nncli does not decode; closed stdin/stdout.

The signal tests start the real CLI with ``NNCLI_TEST_PAUSE=<phase>`` (see
:mod:`nncli.testhooks`), wait for its ``paused`` line, then send the signal: the signal
arrives at a known phase, never "after some sleep".
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from nncli.cli import main

PYTHON = sys.executable
CONSOLE_SCRIPT = Path(sys.executable).with_name("nncli")
WAIT = 60.0  # generous: a loaded 2-core machine starts Python + NumPy slowly


# ---------------------------------------------------------------- helpers


def _default_sigint() -> None:
    # A shell without job control starts background commands with SIGINT ignored, and a
    # careful tool keeps an ignored signal ignored: restore the default so it is testable.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def process_env(tmp: Path, phase: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NNCLI_DEBUG", "PYTHONWARNINGS", "NNCLI_TEST_PAUSE")}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               NNCLI_CACHE_DIR=str(tmp / "image-cache"),
               NNCLI_TEST_PAUSE_FILE=str(tmp / "paused.txt"))
    if phase is not None:
        env["NNCLI_TEST_PAUSE"] = phase
    return env


def start(tmp: Path, phase: str, *args: Any, script: bool = False) -> subprocess.Popen[str]:
    """The real CLI (``nncli`` or ``python -m nncli.cli``), to pause at ``phase``; image
    decoding on the process pool whatever the first image's timing says."""
    (tmp / "paused.txt").unlink(missing_ok=True)
    command = [str(CONSOLE_SCRIPT)] if script else [PYTHON, "-m", "nncli.cli"]
    env = {**process_env(tmp, phase), "NNCLI_DECODE_POOL": "process"}
    return subprocess.Popen([*command, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env=env, preexec_fn=_default_sigint)


def wait_paused(tmp: Path, proc: subprocess.Popen[str], phase: str) -> int:
    """Block until ``proc`` reports it is paused at ``phase``; returns the pid that did."""
    deadline = time.monotonic() + WAIT
    pause_file = tmp / "paused.txt"
    while time.monotonic() < deadline:
        if pause_file.exists():
            for line in pause_file.read_text().splitlines():
                word, where, pid = line.split()
                if word == "paused" and where == phase:
                    return int(pid)
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"exited {proc.returncode} without pausing at {phase!r}: {err}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"never paused at {phase!r}")


def finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """stdout and stderr of ``proc`` once it ends; killed (and failed) if it hangs."""
    try:
        return proc.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"hung; stderr: {err}")


def assert_interrupted(proc: subprocess.Popen[str]) -> str:
    out, err = finish(proc)
    lines = err.strip().splitlines()
    assert proc.returncode == 130, (proc.returncode, err)
    assert len(lines) == 1 and lines[0].startswith("Error: interrupted"), err
    assert "Traceback" not in err
    return lines[0]


def write_yaml(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def blob_table(path: Path, n: int = 60, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = ["f0,f1,f2,label"]
    for i in range(n):
        k = i % 3
        x = rng.normal(size=3) + 3 * k
        lines.append(",".join(f"{v:.4f}" for v in x) + f",c{k}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def noise_images(root: Path, per_class: int, side: int = 32, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (side, side), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:04d}.png")
    return root


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A table config, a trained checkpoint of it, and an image folder big enough that
    decoding runs on the process pool (1,200 images: the pool pays off above 0.25 s)."""
    root = tmp_path_factory.mktemp("signals")
    table = blob_table(root / "train.csv")
    cfg = write_yaml(root / "table.yaml", {
        "name": "sig", "data": {"train": str(table), "label_column": "label"},
        "model": {"hidden": [8]}, "train": {"epochs": 3, "batch_size": 16, "lr": 0.01}})
    result = CliRunner().invoke(main, ["train", str(cfg), "--out", str(root / "run"), "-q"])
    assert result.exit_code == 0, result.output
    images = noise_images(root / "images", per_class=600)
    image_cfg = write_yaml(root / "images.yaml", {
        "name": "img", "data": {"train": str(images), "image": {"mode": "L"}},
        "model": {"hidden": []}, "train": {"epochs": 1}})
    return {"root": root, "table": table, "cfg": cfg, "images": images,
            "image_cfg": image_cfg, "ckpt": root / "run" / "checkpoints" / "last.npz"}


def command_for(phase: str, s: dict[str, Path], out: Path) -> list[Any]:
    """A command that passes through ``phase``."""
    if phase in ("import", "load", "parse-table", "train"):
        return ["train", s["cfg"], "--out", out, "-q"]
    if phase == "decode":
        return ["train", s["image_cfg"], "--out", out, "-q"]
    if phase == "eval":
        return ["eval", s["ckpt"], s["table"]]
    return ["predict", s["ckpt"], "0.1,0.2,0.3", "3,3,3"]


# ---------------------------------------------------------------- 1. every phase


PHASES = ["import", "load", "parse-table", "decode", "train", "eval", "predict"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", PHASES)
def test_a_signal_in_every_phase_is_exit_130_and_one_line(
        setup: dict[str, Path], tmp_path: Path, phase: str, signum: int) -> None:
    """SIGINT and SIGTERM, at start-up, while data loads, a table is parsed, images decode
    (workers running), after an epoch, during eval and predict: exit 130, one ``Error:
    interrupted`` line, no traceback. SIGTERM goes through the console script."""
    proc = start(tmp_path, phase, *command_for(phase, setup, tmp_path / "out"),
                 script=signum == signal.SIGTERM)
    wait_paused(tmp_path, proc, phase)
    proc.send_signal(signum)
    line = assert_interrupted(proc)
    if phase == "train":
        assert re.fullmatch(r"Error: interrupted (during|after) epoch \d+; resume with "
                            r"--resume .*last\.npz", line), line
    else:
        name = "SIGINT" if signum == signal.SIGINT else "SIGTERM"
        assert line == f"Error: interrupted by {name}", line


SWALLOW_IN_READER = """
import signal
import nncli.data as data
real = data.SOURCES["table"]
def swallowing(path, cfg):
    try:
        signal.raise_signal(signal.SIGTERM)
    except KeyboardInterrupt:
        pass  # as NumPy's string-to-float cast does
    return real(path, cfg)
data.SOURCES["table"] = swallowing
"""

SWALLOW_IN_FINALIZER = """
import signal
import nncli.train as train
real = train.save_checkpoint
class Finalized:
    def __del__(self):
        signal.raise_signal(signal.SIGTERM)  # Python prints "Exception ignored" and goes on
def saving(*args, **kwargs):
    Finalized()  # collected at once: its __del__ runs here
    return real(*args, **kwargs)
train.save_checkpoint = saving
"""


@pytest.mark.parametrize("patch", [SWALLOW_IN_READER, SWALLOW_IN_FINALIZER],
                         ids=["c-code-while-reading", "finalizer-while-training"])
def test_a_signal_whose_exception_is_swallowed_still_ends_the_command_with_130(
        setup: dict[str, Path], tmp_path: Path, patch: str) -> None:
    """NumPy 2.x's cast of a string array to float runs Python's signal handler and then
    drops its KeyboardInterrupt (the run used to finish with exit 0); so does Python for
    one raised in a finalizer, after printing "Exception ignored". Here the handler runs
    and its exception is dropped like that, while the table is read or while training
    saves its first checkpoint: the command still stops (training at its next batch)
    with 130 and one line."""
    code = patch + ("import sys\nfrom nncli.cli import main\n"
                    "sys.argv = ['nncli', *sys.argv[1:]]\nmain()\n")
    proc = subprocess.Popen([PYTHON, "-c", code, "train", str(setup["cfg"]), "--out",
                             str(tmp_path / "out"), "-q"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=process_env(tmp_path))
    line = assert_interrupted(proc)
    if patch is SWALLOW_IN_READER:
        assert line == "Error: interrupted by SIGTERM"
    else:
        # stopped at the next batch, long before the 3 epochs
        assert re.match(r"Error: interrupted (during epoch 2|after epoch 1); resume with",
                        line), line


def test_a_string_to_float_cast_loses_the_interrupt_which_the_recheck_restores() -> None:
    """The mechanism, in-process: our handler records the signal even when the exception
    it raised is dropped, and raise_if_interrupted re-raises it."""
    from nncli import interrupts

    # pytest started in the background by a shell without job control inherits SIGINT
    # ignored, and install() rightly keeps it so (test_an_ignored_sigint_stays_ignored):
    # give this process Python's usual SIGINT handler, as the subprocess tests do.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        restore = interrupts.install()
        try:
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                pass  # what NumPy's cast does
            assert interrupts.received() == signal.SIGINT
            with pytest.raises(KeyboardInterrupt):
                interrupts.raise_if_interrupted()
        finally:
            restore()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)


def test_a_signal_inside_held_is_raised_when_the_block_ends() -> None:
    """What np.savez runs in: the handler records the signal and raises nothing until the
    (outermost) block ends; a block that no signal reached ends quietly."""
    from nncli import interrupts

    inherited = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not inherited ignored
    restore = interrupts.install()
    try:
        with interrupts.held():
            pass
        reached_the_end = []
        with pytest.raises(KeyboardInterrupt):
            with interrupts.held():
                with interrupts.held():
                    signal.raise_signal(signal.SIGTERM)
                    reached_the_end.append("inner")
                reached_the_end.append("outer")
        assert reached_the_end == ["inner", "outer"]
        assert interrupts.received() == signal.SIGTERM
    finally:
        restore()
        signal.signal(signal.SIGTERM, inherited)


def test_an_ignored_sigint_stays_ignored(setup: dict[str, Path], tmp_path: Path) -> None:
    """A background job of a shell without job control starts with SIGINT ignored, and
    keeps it so (as every careful Unix tool): the run then finishes normally."""
    proc = subprocess.Popen(
        [PYTHON, "-m", "nncli.cli", "predict", str(setup["ckpt"]), "0,0,0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=process_env(tmp_path, "predict"),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    wait_paused(tmp_path, proc, "predict")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    assert proc.poll() is None  # still paused, i.e. the signal did nothing
    proc.terminate()  # SIGTERM is not ignored
    assert_interrupted(proc)


# ---------------------------------------------------------------- 2. orphan workers


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc/<pid>/stat; field 4 is the PPID)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (a dead child that nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_decode_workers_die_with_their_parent(setup: dict[str, Path], tmp_path: Path,
                                              signum: int) -> None:
    """Kill the parent while images decode on the process pool (held at the decode
    phase, its workers alive): every worker is gone within a few seconds, not left
    blocked on its pipe with PPID 1."""
    from nncli.data.images import available_cpus

    if available_cpus() < 2:
        pytest.skip("one core: no decode pool")
    proc = start(tmp_path, "decode", *command_for("decode", setup, tmp_path / "out"))
    parent = wait_paused(tmp_path, proc, "decode")
    workers = _children(parent)
    assert workers, "no worker processes"
    proc.send_signal(signum)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_running(w) for w in workers):
        time.sleep(0.05)
    out, err = finish(proc)
    alive = [w for w in workers if _running(w)]
    for w in alive:  # do not leave them behind if the test fails
        os.kill(w, signal.SIGKILL)
    assert not alive, f"workers {alive} outlived their parent: {err}"


def test_a_worker_whose_parent_is_gone_before_it_starts_exits_at_once() -> None:
    """The race prctl cannot close: the parent died before the worker set its death
    signal. The initializer sees it and exits."""
    code = ("import os\n"
            "from nncli.data.images import _worker_init\n"
            "_worker_init(2**22 + 12345, True)\n"  # a pid that is not our parent
            "print('still here')\n")
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=WAIT)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", "")


# ---------------------------------------------------------------- 3. image folders


def _remove_tree(top: Path) -> None:
    """rm -r without recursion (shutil.rmtree, and so pytest's clean-up of tmp_path,
    recurse one frame per level and fail on a thousand-deep tree)."""
    stack = [str(top)]
    while stack:
        subdirs = []
        with os.scandir(stack[-1]) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.path)
                else:
                    os.unlink(entry.path)
        if subdirs:
            stack.extend(subdirs)
        else:
            os.rmdir(stack.pop())


def test_an_image_folder_nested_a_thousand_deep_is_read(tmp_path: Path) -> None:
    """No RecursionError (it was an internal error): the walk is iterative."""
    from PIL import Image

    from nncli.data.images import read_image_folder

    root = tmp_path / "deep"
    try:
        for name in ("a", "b"):
            here = root / name
            here.mkdir(parents=True)
            Image.new("L", (4, 4), 10).save(here / "top.png")
            fd = os.open(here, os.O_RDONLY)
            for _ in range(1000):  # level by level (os.makedirs recurses, one frame each)
                os.mkdir("d", dir_fd=fd)
                below = os.open("d", os.O_RDONLY, dir_fd=fd)
                os.close(fd)
                fd = below
            os.close(fd)
            Image.new("L", (4, 4), 200).save(os.path.join(here, *["d"] * 1000, "deep.png"))
        raw = read_image_folder(root, None, "L", tmp_path / "cache", workers=1)
        assert raw.X.shape == (4, 16)
        assert raw.labels.tolist() == ["a", "a", "b", "b"]
    finally:
        _remove_tree(root)


def test_a_symlink_back_inside_the_folder_is_not_followed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A link in a class folder to an ancestor (or to another class) would count images
    twice and under the wrong class: skipped with one warning. A link to a folder
    outside the image folder is followed."""
    from PIL import Image

    from nncli.data.images import read_image_folder

    root = tmp_path / "imgs"
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("L", (4, 4), 77).save(outside / "o.png")
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        Image.new("L", (4, 4), 5).save(root / name / "x.png")
    os.symlink(root, root / "a" / "up")  # the image folder itself
    os.symlink(root / "b", root / "a" / "other")  # another class
    os.symlink(outside, root / "b" / "more")  # outside: followed
    with caplog.at_level("WARNING", logger="nncli"):
        raw = read_image_folder(root, None, "L", tmp_path / "cache", workers=1)
    assert raw.labels.tolist() == ["a", "b", "b"]
    warned = [r.getMessage() for r in caplog.records if "symlinked" in r.getMessage()]
    assert len(warned) == 1 and "skipped 2 symlinked folder(s)" in warned[0], warned


def test_eps_and_other_formats_are_not_decoded(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """Pillow hands .eps to Ghostscript: nncli does not decode it (nor any format outside
    its list), it is skipped as a non-image with the usual warning; and a file with an
    image extension that holds EPS is an error naming it, not a Ghostscript run."""
    from PIL import Image

    from nncli.data.images import image_extensions, load_image, read_image_folder
    from nncli.errors import NncliError

    assert ".eps" not in image_extensions() and ".png" in image_extensions()
    root = tmp_path / "imgs"
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 4 4\nshowpage\n"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        Image.new("L", (4, 4), 5).save(root / name / "x.png")
        (root / name / "y.eps").write_bytes(eps)
    with caplog.at_level("WARNING", logger="nncli"):
        raw = read_image_folder(root, None, "L", tmp_path / "cache", workers=1)
    assert raw.X.shape == (2, 16)
    assert any("skipped 2 file(s)" in r.getMessage() for r in caplog.records)
    disguised = tmp_path / "z.png"
    disguised.write_bytes(eps)
    with pytest.raises(NncliError, match=r"z\.png: cannot decode image"):
        load_image(disguised, None, "L")


def test_a_decompression_bomb_warning_is_one_warning_line_and_twice_over_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over Pillow's MAX_IMAGE_PIXELS: one ``warning:`` line through nncli's logger, not a
    raw Python warning; over twice the limit: the file cannot be decoded, naming it (an
    Error for train/eval; info reports unreadable data as its one warning)."""
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    root = tmp_path / "imgs"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (12, 12), 5 + i).save(root / name / f"{i}.png")  # 144 > 100
    cfg = write_yaml(tmp_path / "c.yaml", {"name": "bomb", "data": {"train": str(root)},
                                           "model": {"hidden": []}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = CliRunner().invoke(main, ["info", str(cfg)])
    assert result.exit_code == 0, result.output
    raw = [str(w.message) for w in caught if "decompression" in str(w.message).lower()]
    assert not raw, raw
    lines = [line for line in result.stderr.splitlines() if "decompression-bomb" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: 4 image(s) exceed"), \
        result.stderr
    Image.new("L", (15, 15), 1).save(root / "b" / "huge.png")  # 225 > 2 x 100
    result = CliRunner().invoke(main, ["info", str(cfg)])  # info: data errors are warnings
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "huge.png: cannot decode image (DecompressionBombError" \
        in lines[0], result.stderr


# ---------------------------------------------------------------- 4. closed stdin/stdout


def _run_closed(tmp: Path, fd: int, *args: Any) -> subprocess.CompletedProcess[str]:
    """The CLI with file descriptor ``fd`` (0 or 1) closed, as ``<&-`` / ``>&-`` do."""
    out = tmp / "out.txt"
    with open(out, "w") as sink:
        done = subprocess.run(
            [PYTHON, "-m", "nncli.cli", *map(str, args)], stderr=subprocess.PIPE,
            stdout=None if fd == 1 else sink, stdin=None if fd == 0 else subprocess.DEVNULL,
            text=True, env=process_env(tmp), timeout=WAIT,
            preexec_fn=lambda: os.close(fd))
    return done


@pytest.mark.parametrize("command", ["info", "train"])
def test_closed_stdout_is_an_error_not_a_silent_success(setup: dict[str, Path],
                                                        tmp_path: Path, command: str) -> None:
    """``nncli info cfg >&-`` used to exit 0 with its output gone; train refuses before
    training (its summary would be lost)."""
    args = [command, setup["cfg"]] + (["--out", tmp_path / "run"] if command == "train" else [])
    done = _run_closed(tmp_path, 1, *args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: stdout is closed"), done.stderr
    assert not (tmp_path / "run").exists()


def test_stdout_that_cannot_be_written_is_an_error(setup: dict[str, Path]) -> None:
    """``> /dev/full``: one Error line, not ``internal error: OSError``."""
    with open("/dev/full", "w") as full:
        done = subprocess.run([PYTHON, "-m", "nncli.cli", "info", str(setup["cfg"])],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=WAIT)
    assert done.returncode == 2
    assert done.stderr.strip() == ("Error: cannot write the output to stdout (No space left "
                                   "on device)"), done.stderr


def test_closed_stdin_for_predict_is_one_error(setup: dict[str, Path], tmp_path: Path) -> None:
    done = _run_closed(tmp_path, 0, "predict", setup["ckpt"])
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: stdin is closed"), done.stderr


def test_a_broken_pipe_stays_a_silent_success(setup: dict[str, Path], tmp_path: Path) -> None:
    """`nncli info cfg | head -1`: the reader left; not an error (as today)."""
    proc = subprocess.Popen([PYTHON, "-m", "nncli.cli", "info", str(setup["cfg"])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=process_env(tmp_path))
    assert proc.stdout is not None
    proc.stdout.close()  # before anything is read
    _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0 and err == b"", err

