"""Spherical codes: Tammes and softmax-code solvers, the paper's HardMax baseline, the
spherical unconstrained feature model and trained-vs-code comparisons. Solution files are
``gnc.codes.store`` (save_solution / load_solution), kept out of this namespace so that importing a
solver never loads the I/O layer.

Public API::

    solve_tammes(d, K, ...)          -> CodeSolution   (value = min angle, degrees; knobs: TammesOptions)
    solve_softmax_code(d, K, ...)    -> CodeSolution   (value = exact rho_ovr; knobs: SoftmaxOptions)
    solve_hardmax(d, K, ...)         -> CodeSolution   (reference sub-gradient solver)
    solve_ufm(d, K, n, tau, ...)     -> CodeSolution   (W classifier, H features)
    ufm_tau_sweep(d, K, n, taus, ...) -> (xr.Dataset, [CodeSolution])
    align_to_code(W_trained, W_code) -> (distance, perm, R)
    code_distance(W, code)           -> RMS distance per vector up to rotation and relabelling
    cross_refine(d, K, candidates)   -> CrossResult (both problems' best codes and the verdict)
    known.*                          best-known Tammes angles, the paper's reference lines
"""

from . import known
from ._common import CodeSolution, max_cosine, min_angle_deg
from .compare import align_to_code, code_distance
from .cross import cross_refine
from .hardmax import solve_hardmax
from .softmax import SoftmaxOptions, solve_softmax_code
from .tammes import TammesOptions, solve_tammes
from .ufm import solve_ufm, ufm_tau_sweep

__all__ = ["CodeSolution", "SoftmaxOptions", "TammesOptions", "align_to_code", "code_distance", "cross_refine", "known", "max_cosine", "min_angle_deg", "solve_hardmax",
           "solve_softmax_code", "solve_tammes", "solve_ufm", "ufm_tau_sweep"]
