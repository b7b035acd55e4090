"""Superseded by the study framework (experiments/stats.py, report.py, study.py); kept only for
experiments/video.py until it is ported (experiments/study.py: how to port a study)."""
from experiments.report import cell_workdir  # noqa: F401  (video.py's import)
