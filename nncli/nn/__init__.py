"""The lecture: layers, activations, losses (the ``Objective``), the model, the training
step, optimizers and gradient checking.

Imports NumPy and the standard library only, never another ``nncli`` module outside
``nncli.nn`` (tests/test_architecture.py). The registries here (``ACTIVATIONS``,
``LOSSES``, ``UPDATES``) are the source of the option names that ``nncli.config`` accepts.
"""
