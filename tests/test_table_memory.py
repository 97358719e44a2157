"""The table reader's memory grows with the data present; over-long fields, signals during
parsing and oversized configs give one clear outcome (issue 10, "memory" part).

Peak memory is measured in-process with tracemalloc, which sees NumPy's array buffers as
well as Python objects: deterministic, unlike RSS.
"""

from __future__ import annotations

import csv
import resource
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers_data import cli, table_text, write_yaml
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nncli.config import config_from_dict, load_config
from nncli.data import RawData, read_table
from nncli.errors import NncliError

MB = 1 << 20
CONFIG_MAX_BYTES = 1 << 20  # the documented bound of a config file


def read(path: Path, label_column: str = "label") -> RawData:
    cfg = config_from_dict({"data": {"train": str(path), "label_column": label_column}})
    return read_table(path, cfg.data)


def peak_bytes(fn: Callable[[], object]) -> tuple[object, int]:
    """``fn()`` and the peak of memory traced while it ran (NumPy buffers included)."""
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def digits_table(path: Path, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """A table like issue 10's: ``rows`` x ``cols`` one-digit features and a label. X."""
    X = np.random.default_rng(seed).integers(0, 10, size=(rows, cols))
    lines = [",".join([f"c{j}" for j in range(cols)] + ["label"])]
    lines += [",".join(map(str, row)) + f",{'ab'[i % 2]}" for i, row in enumerate(X)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return X.astype(np.float64)


# ---------------------------------------------------------------- memory


@pytest.mark.parametrize("cols", [2_000, 50_000])
def test_wide_table_memory_grows_with_the_data_present(tmp_path: Path, cols: int) -> None:
    """40 x 2,000 one-digit cells are a 171 kB file; the reader made a (chunk x columns)
    string array of them (822 MB RSS; 50,000 columns: MemoryError asking 18.6 GiB)."""
    path = tmp_path / "wide.csv"
    X = digits_table(path, rows=40 if cols == 2_000 else 10, cols=cols)
    raw, peak = peak_bytes(lambda: read(path))
    assert np.array_equal(raw.X, X) and raw.labels.tolist()[:2] == ["a", "b"]
    budget = 4 * X.nbytes + 8 * path.stat().st_size + 4 * MB
    assert peak < budget, f"peak {peak / MB:.1f} MB for a {path.stat().st_size / MB:.2f} MB file"


def test_one_long_label_does_not_widen_every_row(tmp_path: Path) -> None:
    """A 100,000-character label made a ``<U100000`` array of every cell of every row."""
    rows = [f"{i % 7}.5,{i % 3},{'x' * 100_000 if i == 50 else 'ab'[i % 2]}" for i in range(100)]
    path = tmp_path / "long.csv"
    path.write_text("a,b,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    raw, peak = peak_bytes(lambda: read(path))
    assert raw.labels[50] == "x" * 100_000 and raw.labels[51] == "b" and len(raw.labels) == 100
    assert peak < 4 * MB, f"peak {peak / MB:.1f} MB"


# ---------------------------------------------------------------- over-long fields


def test_field_over_the_csv_limit_is_an_error_naming_the_line(tmp_path: Path) -> None:
    """A field past csv's 131,072-character limit was an internal error (csv.Error) on the
    exact path, taken here because line 4 is not a number."""
    path = tmp_path / "big.csv"
    path.write_text(f"a,label\n1,x\n2,{'y' * 200_000}\nabc,z\n", encoding="utf-8")
    with pytest.raises(NncliError) as info:
        read(path)
    assert str(info.value) == (f"{path}: line 3: a field is longer than 131,072 characters (a "
                               f"table cell is a number or a label; an unclosed '\"' makes "
                               f"the rest of the file one field)")


def test_unclosed_quote_names_the_line_where_it_opens(tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    body = "".join(f"{i},lbl{i % 2}\n" for i in range(20_000))
    path.write_text(f'a,label\n1,x\n2,"y\n{body}', encoding="utf-8")
    result = cli("train", write_yaml(tmp_path / "cfg.yaml", {"data": {"train": str(path)}}),
                 "--out", tmp_path / "run")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"Error: {path}: line 3: a field is longer than "
                                          f"131,072 characters (a table cell is a number or a "
                                          f"label; an unclosed '\"' makes the rest of the file "
                                          f"one field)"]


# ---------------------------------------------------------------- chunks agree


@pytest.fixture
def tiny_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of a few cells, so that small tables cross many chunk boundaries."""
    import nncli.data.tables

    monkeypatch.setattr(nncli.data.tables, "CHUNK_CELLS", 7)


def reference(path: Path, delimiter: str = ",") -> tuple[list[list[float]], list[str], list[int]]:
    """X, labels and line numbers read row by row with csv (label column last)."""
    X, labels, lines = [], [], []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        next(reader)
        for row in reader:
            if row and not (len(row) == 1 and not row[0].strip()):
                X.append([float(v) for v in row[:-1]])
                labels.append(row[-1].strip())
                lines.append(reader.line_num)
    return X, labels, lines


def test_quoted_rows_across_chunk_boundaries(tmp_path: Path, tiny_chunks: None) -> None:
    path = tmp_path / "q.csv"
    path.write_text('a,b,label\n1,2,plain\n"3","4","two\nlines"\n\n5,6,"a,b"\r\n'
                    '7, 8 ,"say ""hi"""\n   \n9,1_0,"x\n\ny"\n11,12,z\n', encoding="utf-8")
    raw = read(path)
    X, labels, lines = reference(path)
    assert (raw.X.tolist(), raw.labels.tolist(), raw.label_lines.tolist()) == (X, labels, lines)


def test_first_bad_row_is_named_whatever_the_chunking(tmp_path: Path, tiny_chunks: None) -> None:
    path = tmp_path / "bad.csv"
    path.write_text('a,b,label\n1,2,x\n"3",4,y\n5,6,z\n7,zz,w\n8,9\n', encoding="utf-8")
    with pytest.raises(NncliError, match=r"line 5, column 2: not a number: 'zz'$"):
        read(path)


@given(X=hnp.arrays(np.float64, st.tuples(st.integers(1, 30), st.integers(1, 6)),
                    elements=st.floats(allow_nan=False, allow_infinity=False)),
       quote=st.booleans(), blank_every=st.integers(0, 4))
def test_fast_and_exact_paths_read_the_same_numbers(tmp_path: Path, X: np.ndarray, quote: bool,
                                                    blank_every: int) -> None:
    """np.loadtxt (plain chunks) and float() per field (quoted chunks) agree bit for bit."""
    import nncli.data.tables

    lines = table_text(X, [f"c{i % 3}" for i in range(len(X))]).splitlines()
    if quote:
        lines[1] = lines[1].replace(",c0", ',"c0"')
    if blank_every:
        spaced = []
        for i, line in enumerate(lines):
            spaced += [line, ""] if i % blank_every == 0 else [line]
        lines = spaced
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    original = nncli.data.tables.CHUNK_CELLS
    try:
        nncli.data.tables.CHUNK_CELLS = 3 * (X.shape[1] + 1)
        raw = read(path)
    finally:
        nncli.data.tables.CHUNK_CELLS = original
    ref_X, ref_labels, ref_lines = reference(path)
    assert np.array_equal(raw.X, X) and np.array_equal(np.signbit(raw.X), np.signbit(X))
    assert (raw.X.tolist(), raw.labels.tolist(), raw.label_lines.tolist()) == (
        ref_X, ref_labels, ref_lines)


# ---------------------------------------------------------------- signals


def test_keyboard_interrupt_inside_the_chunk_loop_propagates(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             tiny_chunks: None) -> None:
    """Nothing in the reader swallows Ctrl-C: raised between chunks, or inside the NumPy
    call of a chunk, it leaves read_table as it came."""
    import nncli.data.tables

    path = tmp_path / "t.csv"
    digits_table(path, rows=30, cols=2)
    calls = []
    chunk = nncli.data.tables._Parse.chunk

    def interrupted(self: object, lines: list[str], first_line: int) -> None:
        calls.append(first_line)
        if len(calls) == 3:
            raise KeyboardInterrupt
        chunk(self, lines, first_line)

    monkeypatch.setattr(nncli.data.tables._Parse, "chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        read(path)
    assert calls == [2, 4, 6]
    monkeypatch.setattr(nncli.data.tables._Parse, "chunk", chunk)

    def loadtxt(*args: object, **kwargs: object) -> np.ndarray:
        raise KeyboardInterrupt  # as a signal handler would, inside the C parse

    monkeypatch.setattr(nncli.data.tables.np, "loadtxt", loadtxt)
    with pytest.raises(KeyboardInterrupt):
        read(path)


def test_parse_table_pause_comes_after_the_header_before_any_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nncli.data.tables
    import nncli.testhooks

    path = tmp_path / "t.csv"
    digits_table(path, rows=5, cols=3)
    events: list[str] = []
    chunk = nncli.data.tables._Parse.chunk
    monkeypatch.setattr(nncli.testhooks, "pause_here", lambda phase: events.append(phase))
    monkeypatch.setattr(nncli.data.tables._Parse, "chunk",
                        lambda self, *a: (events.append("chunk"), chunk(self, *a)))
    read(path)
    assert events == ["parse-table", "chunk"]
    events.clear()
    (tmp_path / "nolabel.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(NncliError, match="no label column"):
        read(tmp_path / "nolabel.csv")
    assert events == []


# ---------------------------------------------------------------- config size


def test_oversized_config_is_an_error_naming_file_size_and_limit(tmp_path: Path) -> None:
    """A 10 MB YAML flow list took 3.3 GB and 257 s to parse. Here a 2 MB comment (which
    parsed fine) stands for it; the bound is on bytes, before YAML sees any."""
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * (2 * MB) + "\ndata: {train: t.csv}\n", encoding="utf-8")
    size = path.stat().st_size
    with pytest.raises(NncliError) as info:
        load_config(path)
    assert str(info.value) == (f"{path}: the config file is {size:,} bytes, over the limit "
                               f"of {CONFIG_MAX_BYTES:,} bytes (a config is a few hundred "
                               f"bytes; data belongs in data.train)")
    path.write_text("#" * (CONFIG_MAX_BYTES - 22) + "\ndata: {train: t.csv}\n", encoding="utf-8")
    assert path.stat().st_size == CONFIG_MAX_BYTES and load_config(path).data.train == "t.csv"


def test_config_read_stops_after_the_limit(tmp_path: Path) -> None:
    """An endless config (a device here) is cut after limit + 1 bytes, in a child whose
    address space is capped so that an unbounded read fails fast instead of filling RAM."""
    code = textwrap.dedent("""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from nncli.config import load_config
        from nncli.errors import NncliError
        try:
            load_config("/dev/zero")
        except NncliError as exc:
            print(exc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, preexec_fn=lambda: resource.setrlimit(
                              resource.RLIMIT_CPU, (60, 60)))
    assert proc.stdout == ("/dev/zero: the config file is more than 1,048,576 bytes, over the "
                           "limit of 1,048,576 bytes (a config is a few hundred bytes; data "
                           "belongs in data.train)\n"), proc.stderr[-500:]


def test_windows_line_endings_in_a_config_still_read(tmp_path: Path) -> None:
    path = tmp_path / "crlf.yaml"
    path.write_bytes(b"data:\r\n  train: t.csv\r\ntrain:\r\n  epochs: 3\r\n")
    cfg = load_config(path)
    assert (cfg.data.train, cfg.train.epochs) == ("t.csv", 3)

