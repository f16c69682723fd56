"""gcp.bench: timing in interleaved rounds and dated results files, for ``benchmarks/`` and
``gcp-compare`` (not part of the numerical core, which never imports it)."""

from .results import Report, environment
from .timing import interleaved_ms, markdown_table, median_ratio, positive_int, sync

__all__ = ["Report", "environment", "interleaved_ms", "markdown_table", "median_ratio", "positive_int", "sync"]
