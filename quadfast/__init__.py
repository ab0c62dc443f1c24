"""quadfast: fast, trustworthy simulation of SGD in high-dimensional quadratic neural networks.

Public API: :class:`Teacher`, :class:`StiefelSGD`, :class:`EuclideanSGD`, :class:`Trajectory`, :func:`logspace_steps`,
and the submodules :mod:`quadfast.riccati` (population dynamics), :mod:`quadfast.theory`
(scaling laws of MODEL.md §5) and :mod:`quadfast.reference` (plain NumPy references).
Conventions (MODEL.md): x ~ N(0, I_d), teacher f*(x) = sum_j lambda_j He2(<theta_j, x>),
time t = lr * steps, risk R = 1 - tr((G Lambda)^2) / tr(Lambda^2).
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("quadfast")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

try:
    from ._ext import core as _core  # noqa: F401  (the best extension variant for this CPU)
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "quadfast's compiled extension (quadfast._core) could not be imported: was the extension built? "
        "Install the package with `pip install .` (it compiles the C++ core), and do not run Python from "
        "inside the source folder of an uninstalled checkout."
    ) from exc

from . import qplr, reference, riccati, theory  # noqa: E402
from .qplr import QPLR, QPLRRun  # noqa: E402
from .radial import FinetuneResult, finetune, radial_risk  # noqa: E402
from .stiefel import (  # noqa: E402
    DivergenceError, StiefelSGD, Trajectory, default_block, haar_stiefel, last_level_cache_bytes, logspace_steps,
)
from .teacher import Teacher, power_law_coef  # noqa: E402
from .euclid import EuclideanSGD  # noqa: E402
from .results import load_result  # noqa: E402

__all__ = [
    "Teacher", "StiefelSGD", "EuclideanSGD", "Trajectory", "DivergenceError", "logspace_steps", "haar_stiefel",
    "default_block", "last_level_cache_bytes", "power_law_coef", "reference", "riccati", "theory", "load_result", "__version__",
    "finetune", "FinetuneResult", "radial_risk", "QPLR", "QPLRRun", "qplr",
]
