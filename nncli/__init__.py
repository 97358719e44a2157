"""nncli: linear and MLP classifiers with hand-written backprop in NumPy."""

from nncli.errors import DivergedError, NncliError

__version__ = "0.1.0"

__all__ = ["DivergedError", "NncliError", "__version__"]
