"""A small collector of problems, each with the key path it belongs to."""

from __future__ import annotations

from typing import Any

import pandas as pd


class Check:
    """Collects problems with their key paths while the spec is read."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.paths: dict[str, str] = {}  # where a setting was found, for checks made later (data_checks)

    def warn(self, key: str, why: str) -> None:
        self.warnings.append(f"{key}: {why}")

    def add(self, key: str, why: str) -> None:
        self.problems.append(f"{key}: {why}")

    def mapping(self, value: Any, key: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(key, f"expected a mapping, got {type(value).__name__} {value!r}")
            return {}
        return value

    def unknown(self, mapping: dict, key: str, known: set[str]) -> None:
        for name in mapping:
            if name not in known:
                self.add(f"{key}.{name}" if key else str(name), "unknown or unsupported key")

    def date(self, value: Any, key: str, allow_empty: bool = False) -> str:
        if value is None and allow_empty:
            return ""
        try:
            day = pd.Timestamp(value)
        except (TypeError, ValueError):
            day = pd.NaT
        if pd.isna(day):
            self.add(key, f"not a date: {value!r}")
            return ""
        if day != day.normalize():
            self.add(key, f"daily data only: {value!r} has a time of day")
        return str(day.date())

    def number(self, value: Any, key: str, kind: type, minimum: float | None = None) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.add(key, f"expected a number, got {value!r}")
            return None
        if kind is int and float(value) != int(value):
            self.add(key, f"expected a whole number, got {value!r}")
            return None
        if minimum is not None and value < minimum:
            self.add(key, f"must be at least {minimum}, got {value!r}")
            return None
        return kind(value)

    def equals(self, value: Any, key: str, allowed: set, why: str) -> None:
        if value not in allowed:
            self.add(key, f"{value!r} is not supported: {why}")

