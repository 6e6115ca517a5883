"""Spherical codes: Tammes and softmax-code solvers, the paper's HardMax baseline, the spherical
unconstrained feature model, trained-vs-code comparisons and the cross-polish of both problems' codes
(:func:`cross_refine`).  Solution files are ``gnc.codes.store`` (save_solution / load_solution), kept
out of this namespace so that importing a solver never loads the I/O layer.
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
