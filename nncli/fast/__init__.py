"""The annex: speed that wraps the math in ``nncli.nn`` (BLAS products bound once).

Imports NumPy, the standard library, ``nncli.nn`` and ``nncli.fast`` only.
"""
