"""Supervisor report: HTML with PNG charts (sales, forecast backtest, EOQ/ROP, (s,Q) replay, quality).

matplotlib is imported only when a chart is drawn (the `report` extra).
"""

from smartstock.report.build import ReportResult, build_report

__all__ = ["ReportResult", "build_report"]
