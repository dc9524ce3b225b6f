"""The benchmark's results: one ``Row`` per figure, gathered in a ``Report`` (shared by run.py
and the modules it calls)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


@dataclass
class Row:
    key: str
    label: str
    samples: list[float]
    unit: str
    target: str = ""
    passed: bool | None = None  # None: informational
    gating: bool = False
    indent: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def p90(self) -> float:
        return p90(self.samples) if self.samples else float("nan")

    def as_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "median": round(self.median, 4),
            "p90": round(self.p90, 4),
            "n": len(self.samples),
            "unit": self.unit,
        }
        if self.samples:
            item["min"], item["max"] = round(min(self.samples), 4), round(max(self.samples), 4)
        if self.target:
            item["target"] = self.target
            item["pass"] = self.passed
            item["gating"] = self.gating
        return item


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row
