"""Counters and gauges served as Prometheus text on ``GET /metrics``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

__all__ = ["Metrics"]


class Metrics:
    """A tiny registry: labelled counters plus gauges read when scraped."""

    def __init__(self) -> None:
        self._counters: dict[str, Counter[tuple[tuple[str, str], ...]]] = {}
        self._help: dict[str, str] = {}
        self._gauges: dict[str, Callable[[], float]] = {}
        self._kinds: dict[str, str] = {}

    def counter(self, name: str, help_text: str) -> None:
        self._counters.setdefault(name, Counter())
        self._help[name] = help_text

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        self._counters[name][tuple(sorted(labels.items()))] += amount

    def gauge(
        self,
        name: str,
        help_text: str,
        read: Callable[[], float],
        *,
        kind: str = "gauge",
    ) -> None:
        """A value read when scraped; ``kind`` "counter" for one that only grows."""
        self._gauges[name] = read
        self._help[name] = help_text
        self._kinds[name] = kind

    def render(self) -> str:
        lines: list[str] = []
        for name, values in sorted(self._counters.items()):
            lines.append(f"# HELP {name} {self._help[name]}")
            lines.append(f"# TYPE {name} counter")
            for labels, value in sorted(values.items()):
                lines.append(f"{name}{_labels(labels)} {value}")
        for name, read in sorted(self._gauges.items()):
            lines.append(f"# HELP {name} {self._help[name]}")
            lines.append(f"# TYPE {name} {self._kinds[name]}")
            lines.append(f"{name} {read():g}")
        return "\n".join(lines) + "\n"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels
    )
    return "{" + inner + "}"
