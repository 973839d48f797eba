"""`coversearch report`: one self-contained HTML page about a store, its search and its classifiers."""

from coversearch.report.build import ReportSummary, build_report

__all__ = ["ReportSummary", "build_report"]
