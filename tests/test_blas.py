"""nncli.fast.blas.Product: C = alpha op(A) op(B) + beta C for a batch of m rows, through BLAS
or NumPy, against the same expression written with numpy.matmul."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nncli.fast import blas
from nncli.fast.blas import Product


def _layout(a: np.ndarray, transposed: bool) -> np.ndarray:
    """The same values, stored row-major or as the transpose of a row-major array."""
    return np.ascontiguousarray(a.T).T if transposed else np.ascontiguousarray(a)


@pytest.fixture(params=["blas", "numpy"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "blas" and not blas._GEMM:
        pytest.skip(f"no BLAS GEMM here ({blas.BACKEND})")
    if request.param == "numpy":
        monkeypatch.setattr(blas, "_GEMM", {})
    return request.param


@settings(max_examples=60, deadline=None)
@given(dims=st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9)),
       m_frac=st.floats(0.01, 1.0), trans=st.tuples(st.booleans(), st.booleans()),
       batch=st.sampled_from(["rows", "inner"]), dtype=st.sampled_from(["float32", "float64"]),
       alpha=st.sampled_from([1.0, -1.0, 0.37]), beta=st.sampled_from([0.0, 1.0, 0.9]),
       seed=st.integers(0, 2**16))
def test_product_is_alpha_ab_plus_beta_c_on_the_first_m_examples(
        backend: str, dims: tuple[int, int, int], m_frac: float, trans: tuple[bool, bool],
        batch: str, dtype: str, alpha: float, beta: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    p, k, q = dims  # A: (p, k), B: (k, q), C: (p, q) at full capacity
    a = _layout(rng.standard_normal((p, k)).astype(dtype), trans[0])
    b = _layout(rng.standard_normal((k, q)).astype(dtype), trans[1])
    c = rng.standard_normal((p, q)).astype(dtype)
    capacity = p if batch == "rows" else k
    m = max(1, int(round(m_frac * capacity)))
    expected = c.copy()
    if batch == "rows":
        expected[:m] = alpha * (a[:m] @ b) + beta * c[:m]
    else:
        expected = alpha * (a[:, :m] @ b[:m]) + beta * c
    product = Product(a, b, c, batch)
    product(m, alpha, beta)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(c, expected, rtol=tol, atol=tol)
    assert product.uses_blas == (backend == "blas")


def test_product_reads_the_arrays_as_they_are_at_call_time(backend: str) -> None:
    """Bound once, called every step: later in-place changes of A, B and C are seen."""
    a, b, c = np.ones((4, 3)), np.ones((3, 2)), np.zeros((4, 2))
    product = Product(a, b, c, "rows")
    a *= 2.0
    product(4)
    np.testing.assert_array_equal(c, np.full((4, 2), 6.0))
    c += 1.0
    product(2, 1.0, 1.0)
    np.testing.assert_array_equal(c[:2], np.full((2, 2), 13.0))
    np.testing.assert_array_equal(c[2:], np.full((2, 2), 7.0))


def test_product_rejects_mismatched_shapes_and_dtypes() -> None:
    with pytest.raises(ValueError, match="do not match"):
        Product(np.ones((4, 3)), np.ones((2, 2)), np.ones((4, 2)), "rows")
    with pytest.raises(ValueError, match="dtype"):
        Product(np.ones((4, 3), np.float32), np.ones((3, 2)), np.ones((4, 2)), "rows")
    with pytest.raises(ValueError, match="batch"):
        Product(np.ones((4, 3)), np.ones((3, 2)), np.ones((4, 2)), "cols")


def test_a_batch_larger_than_the_bound_arrays_is_refused(backend: str) -> None:
    rows = Product(np.ones((4, 3)), np.ones((3, 2)), np.zeros((4, 2)), "rows")
    inner = Product(np.ones((3, 4)), np.ones((4, 2)), np.zeros((3, 2)), "inner")
    for product in (rows, inner):
        with pytest.raises(ValueError):
            product(5)


def test_strided_operands_fall_back_to_numpy_and_stay_correct() -> None:
    a = np.arange(24.0).reshape(4, 6)[:, ::2]  # neither row- nor column-major
    b, c = np.ones((3, 2)), np.zeros((4, 2))
    product = Product(a, b, c, "rows")
    assert not product.uses_blas
    product(4)
    np.testing.assert_array_equal(c, a @ b)


def test_nncli_blas_numpy_switches_the_backend_off() -> None:
    code = "import nncli.fast.blas as b; print(b.BACKEND); print(bool(b._GEMM))"
    env = {**os.environ, "NNCLI_BLAS": "numpy"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split("\n")
    assert out[0].startswith("numpy") and out[1] == "False"


def test_the_openblas_bundled_with_numpy_is_found_when_present() -> None:
    """A NumPy wheel that ships OpenBLAS must give the fused path, not a silent fallback."""
    bundled = glob.glob(os.path.join(os.path.dirname(os.path.dirname(np.__file__)),
                                     "numpy.libs", "*scipy_openblas64*"))
    if not bundled or os.environ.get("NNCLI_BLAS") == "numpy":
        pytest.skip("this NumPy does not bundle scipy-openblas64")
    assert blas._GEMM, blas.BACKEND
    assert "openblas" in blas.BACKEND
