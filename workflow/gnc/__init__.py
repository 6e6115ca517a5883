"""gnc-study: the library behind the Generalized Neural Collapse workflow.

Stages (one module each, rules stay thin):
  data       prepared, versioned, checksummed datasets
  models     backbones with a d-dim head; normalized cosine classifier
  train      the training loop (device, checkpoints, resume)
  features   feature extraction from checkpoints
  metrics    streaming GNC / NC metrics and the exact one-vs-rest distance
  codes      Tammes, softmax-code, HardMax and UFM solvers; comparisons
  figures    one function per figure: data in, (figure, tidy frame) out
  io, provenance   atomic writes, netCDF helpers, provenance attributes
  analysis   reading a finished study: open_study (xarray), study_table (pandas)
"""

__version__ = "0.1.0"

from .analysis import open_study, study_table  # noqa: E402

__all__ = ["open_study", "study_table"]
