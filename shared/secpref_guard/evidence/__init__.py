"""Evidence for auditors: a run report as one row per account and baseline field, written as
CSV (csv_format.py), OCSF compliance findings (ocsf.py) or one self-contained HTML page
(html_page.py). rows.py is the one place that derives the rows; the formats only render them."""

from __future__ import annotations

from .rows import Evidence, Row, evidence

FORMATS = ("csv", "ocsf", "html")

__all__ = ["FORMATS", "Evidence", "Row", "evidence", "render"]


def render(document: Evidence, format: str) -> str:
    """The evidence in one of ``FORMATS``."""
    if format == "csv":
        from .csv_format import render_csv

        return render_csv(document)
    if format == "ocsf":
        from .ocsf import render_ocsf

        return render_ocsf(document)
    if format == "html":
        from .html_page import render_html

        return render_html(document)
    raise ValueError(f"unknown report format {format!r}; expected one of {', '.join(FORMATS)}")
