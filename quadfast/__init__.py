"""quadfast: fast simulation of SGD in high-dimensional quadratic neural networks."""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("quadfast")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"
