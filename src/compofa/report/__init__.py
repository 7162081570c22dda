"""Analysis and plots of latency tables: Pareto fronts, the paper's design-space views, cross-device
rank agreement and measurement noise, written as PNG files, JSON figures and one HTML page.

Drawing needs matplotlib (``pip install 'compofa[report]'``); the computations do not.
"""

from compofa.report.build import PAGE_NAME, SUMMARY_NAME, ReportRequest, ReportResult, write_report
from compofa.report.series import MIN_ENTRIES, ReportError

__all__ = ["MIN_ENTRIES", "PAGE_NAME", "ReportError", "ReportRequest", "ReportResult", "SUMMARY_NAME", "write_report"]
