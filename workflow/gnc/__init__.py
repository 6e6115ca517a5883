"""gnc-study: the library behind the Generalized Neural Collapse workflow. One module per stage (data,
models, train, features, metrics, codes, figures), rules stay thin; ARCHITECTURE.md maps the modules."""

__version__ = "0.1.0"

from .analysis import open_study, study_table  # noqa: E402

__all__ = ["open_study", "study_table"]
