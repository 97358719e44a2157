"""``C = alpha op(A) op(B) + beta C`` on preallocated arrays, through NumPy's own BLAS.

NumPy's ``matmul`` always overwrites its output, so a layer's bias add and a plain SGD update
each cost a separate pass over a large array. The BLAS GEMM underneath accumulates into C
for free, which lets the training step fold both into the products it computes anyway:

- forward: copy ``b`` into every row of Z, then ``Z = A W^T + 1 Z``;
- plain SGD: ``W^T = -lr A^T dZ + (1 - 2 lr lambda) W^T``, so ``dW`` is never written
  (it saves a full read-modify-write of W per step, ~8% of an MNIST-sized step).

The GEMM is called with ``ctypes`` (standard library) from the OpenBLAS that NumPy wheels
ship (``scipy_cblas_sgemm64_`` / ``scipy_cblas_dgemm64_``, 64-bit integers). Each library
found is checked against ``numpy.matmul`` on small products before use. Where none is
found, or with ``NNCLI_BLAS=numpy``, :class:`Product` computes the same thing with NumPy
(one scratch array, still allocation-free per call).
"""

from __future__ import annotations

import ctypes
import glob
import os
from collections.abc import Callable

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
# (symbol prefix, suffix, C type of the integer arguments). Only ILP64 builds are listed:
# their names say the integer width, so a call can never pass the wrong one.
_SYMBOLS = (("scipy_cblas_", "64_", ctypes.c_int64), ("cblas_", "64_", ctypes.c_int64))


def _library_candidates() -> list[str]:
    """Shared libraries that may hold NumPy's BLAS: its bundled ones, then what is loaded."""
    root = os.path.dirname(os.path.dirname(np.__file__))
    paths: list[str] = []
    for pattern in ("numpy.libs/*blas*", os.path.join("numpy", ".dylibs", "*blas*")):
        paths += sorted(glob.glob(os.path.join(root, pattern)))
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths += sorted({line.split()[-1] for line in maps
                             if "blas" in line.rsplit("/", 1)[-1].lower() and "/" in line})
    except OSError:
        pass
    return list(dict.fromkeys(paths))


class _Gemm:
    """One ``cblas_?gemm`` symbol and the C types of its arguments."""

    def __init__(self, fn: Callable[..., None], real: type, integer: type) -> None:
        # Called with ctypes objects only (no argtypes): converting 14 Python numbers on
        # every call would cost about as much as a small product itself.
        fn.restype = None
        self.fn, self.real, self.integer = fn, real, integer


def _bind(lib: ctypes.CDLL, name: str, real: type, integer: type) -> _Gemm:
    return _Gemm(getattr(lib, name), real, integer)


def _find_gemm() -> tuple[dict[np.dtype, _Gemm], str]:
    """``({float32: sgemm, float64: dgemm}, "library:symbol")`` or ``({}, reason)``."""
    if os.environ.get("NNCLI_BLAS", "").lower() == "numpy":
        return {}, "numpy (NNCLI_BLAS=numpy)"
    for path in _library_candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix, integer in _SYMBOLS:
            try:
                fns = {np.dtype(np.float32): _bind(lib, f"{prefix}sgemm{suffix}",
                                                   ctypes.c_float, integer),
                       np.dtype(np.float64): _bind(lib, f"{prefix}dgemm{suffix}",
                                                   ctypes.c_double, integer)}
            except AttributeError:
                continue
            if _self_test(fns):
                return fns, f"{os.path.basename(path)}:{prefix}gemm{suffix}"
    return {}, "numpy (no usable BLAS GEMM found)"


def _self_test(fns: dict[np.dtype, _Gemm]) -> bool:
    """Every transpose combination and both dtypes agree with numpy.matmul."""
    rng = np.random.default_rng(0)
    for dtype, tol in ((np.float32, 1e-5), (np.float64, 1e-12)):
        a = rng.standard_normal((5, 3)).astype(dtype)
        b = rng.standard_normal((3, 4)).astype(dtype)
        for a_op in (a, np.ascontiguousarray(a.T).T):
            for b_op in (b, np.ascontiguousarray(b.T).T):
                c = rng.standard_normal((5, 4)).astype(dtype)
                expected = -0.5 * (a_op @ b_op) + 0.25 * c
                try:
                    _gemm_call(fns[np.dtype(dtype)], a_op, b_op, c, _Layout.rows)(5, -0.5, 0.25)
                except Exception:  # noqa: BLE001 - any failure means: do not use it
                    return False
                if not np.allclose(c, expected, rtol=tol, atol=tol):
                    return False
    return True


class _Layout:
    rows, inner = "rows", "inner"


def _operand(a: np.ndarray) -> tuple[int, int] | None:
    """(transpose flag, leading dimension) of a 2-D view as a row-major BLAS operand."""
    r, s = a.shape
    it = a.itemsize
    s0, s1 = a.strides
    if s1 == it and s0 % it == 0 and s0 >= max(1, s) * it:
        return _NO_TRANS, s0 // it
    if s0 == it and s1 % it == 0 and s1 >= max(1, r) * it:
        return _TRANS, s1 // it
    return None


def _blas_layouts(a: np.ndarray, b: np.ndarray, c: np.ndarray,
                  ) -> tuple[tuple[int, int], tuple[int, int], int] | None:
    """((transpose, ld) of A, of B, ld of C), or None where BLAS cannot take the operands:
    A or B neither row- nor column-major, C not row-major, or C empty."""
    layout_a, layout_b, layout_c = _operand(a), _operand(b), _operand(c)
    if (layout_a is None or layout_b is None or layout_c is None
            or layout_c[0] != _NO_TRANS or min(c.shape) == 0):
        return None
    return layout_a, layout_b, layout_c[1]


def _gemm_call(gemm: _Gemm, a: np.ndarray, b: np.ndarray, c: np.ndarray,
               batch: str) -> Callable[[int, float, float], None]:
    """The BLAS call for :class:`Product` with every pointer and stride fixed now."""
    layouts = _blas_layouts(a, b, c)
    if layouts is None:
        raise ValueError("operands must be row- or column-major, the output row-major")
    (ta, lda), (tb, ldb), ldc = layouts
    fn, real, integer = gemm.fn, gemm.real, gemm.integer
    head = (ctypes.c_int(_ROW_MAJOR), ctypes.c_int(ta), ctypes.c_int(tb))
    pa, pb, pc = (ctypes.c_void_p(x.ctypes.data) for x in (a, b, c))
    lda_c, ldb_c, ldc_c = integer(lda), integer(ldb), integer(ldc)
    m_full, n = c.shape
    k_full = a.shape[1]
    m_full_c, n_c, k_full_c = integer(m_full), integer(n), integer(k_full)
    scalars: dict[float, object] = {}  # alpha and beta as C numbers, by value

    def scalar(x: float) -> object:
        value = scalars.get(x)
        if value is None:
            if len(scalars) > 64:  # a schedule changing beta every epoch: keep it small
                scalars.clear()
            value = scalars[x] = real(x)
        return value

    # m beyond the bound capacity would make BLAS read and write past the arrays.
    if batch == _Layout.rows:
        def call(m: int, alpha: float = 1.0, beta: float = 0.0) -> None:
            if not 0 < m <= m_full:
                raise ValueError(f"batch of {m} rows for a product bound to {m_full}")
            fn(*head, integer(m), n_c, k_full_c, scalar(alpha), pa, lda_c, pb, ldb_c,
               scalar(beta), pc, ldc_c)
    else:
        def call(m: int, alpha: float = 1.0, beta: float = 0.0) -> None:
            if not 0 < m <= k_full:
                raise ValueError(f"batch of {m} rows for a product bound to {k_full}")
            fn(*head, m_full_c, n_c, integer(m), scalar(alpha), pa, lda_c, pb, ldb_c,
               scalar(beta), pc, ldc_c)
    call.keep_alive = (a, b, c)  # type: ignore[attr-defined]  # the pointers' owners
    return call


def _numpy_call(a: np.ndarray, b: np.ndarray, c: np.ndarray,
                batch: str) -> Callable[[int, float, float], None]:
    """The same contract as :func:`_gemm_call`, with NumPy and one scratch array."""
    scratch = np.empty_like(c)
    capacity = a.shape[0] if batch == _Layout.rows else a.shape[1]

    def call(m: int, alpha: float = 1.0, beta: float = 0.0) -> None:
        if not 0 < m <= capacity:
            raise ValueError(f"batch of {m} rows for a product bound to {capacity}")
        if batch == _Layout.rows:
            a_m, b_m, c_m, s_m = a[:m], b, c[:m], scratch[:m]
        else:
            a_m, b_m, c_m, s_m = a[:, :m], b[:m], c, scratch
        if beta == 0.0:
            np.matmul(a_m, b_m, out=c_m)
            if alpha != 1.0:
                c_m *= alpha
            return
        np.matmul(a_m, b_m, out=s_m)
        if beta != 1.0:
            c_m *= beta
        if alpha == 1.0:
            c_m += s_m
        elif alpha == -1.0:
            c_m -= s_m
        else:
            c_m += np.multiply(s_m, alpha, out=s_m)
    return call


_GEMM, BACKEND = _find_gemm()


class Product:
    """``C = alpha op(A) op(B) + beta C`` for a batch of ``m`` examples, bound to fixed arrays.

    Shapes at full batch capacity ``M``, either ``batch="rows"``: A: (M, k), B: (k, n),
    C: (M, n), using rows ``[:m]`` of A and C; or ``batch="inner"``: A: (p, M), B: (M, n),
    C: (p, n), summing over the first ``m`` examples. A and B may be row-major or
    transposed views of row-major arrays; C must be row-major. The arrays are updated in
    place by later calls, so bind them once and reuse the product every step.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, batch: str) -> None:
        if batch not in (_Layout.rows, _Layout.inner):
            raise ValueError(f"batch must be 'rows' or 'inner', not {batch!r}")
        if not (a.dtype == b.dtype == c.dtype):
            raise ValueError("operands must share one dtype")
        if a.shape[1] != b.shape[0] or (a.shape[0], b.shape[1]) != c.shape:
            raise ValueError(f"shapes {a.shape} @ {b.shape} -> {c.shape} do not match")
        gemm = _GEMM.get(c.dtype)
        self.uses_blas = gemm is not None and _blas_layouts(a, b, c) is not None
        self.run = (_gemm_call(gemm, a, b, c, batch) if gemm is not None and self.uses_blas
                    else _numpy_call(a, b, c, batch))

    def __call__(self, m: int, alpha: float = 1.0, beta: float = 0.0) -> None:
        self.run(m, alpha, beta)
