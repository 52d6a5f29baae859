"""The Prometheus text exposition format, written once for the operator and the sidecar (stdlib).

    out = TextWriter()
    out.metric("promptalias_up", "gauge", "The process is running.", [({}, 1)])
    out.render()  # "# HELP promptalias_up ...\n# TYPE promptalias_up gauge\npromptalias_up 1\n"

A family of one unlabelled sample is `out.single(name, kind, help, value)`; a counter keyed by one
label is `out.metric(name, "counter", help, by_label("registry", counts))`.

Label values are escaped as the format requires (backslash, newline, double quote); integral
values are written as integers, others in their shortest exact form. The sidecar must stay light
and the operator's metrics are a handful of counters: this is the part of `prometheus_client`
both need.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Sample = tuple[Mapping[str, str], float]


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def number(value: float) -> str:
    """Integers as integers, other floats in their shortest exact form."""
    as_float = float(value)
    return str(int(as_float)) if as_float.is_integer() else repr(as_float)


def by_label(label: str, counts: Mapping[str, float]) -> list[Sample]:
    """One sample per key of `counts`, labelled `label`, in key order (a stable exposition)."""
    return [({label: key}, value) for key, value in sorted(counts.items())]


class TextWriter:
    """Collects metric families; `render()` gives the exposition text ending in a newline."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.sample(name, labels, value)

    def single(self, name: str, kind: str, help_text: str, value: float) -> None:
        """A family of one sample without labels (a gauge, or a process-wide counter)."""
        self.metric(name, kind, help_text, [({}, value)])

    def sample(self, name: str, labels: Mapping[str, str], value: float) -> None:
        rendered = ",".join(f'{key}="{escape(str(val))}"' for key, val in sorted(labels.items()))
        self._lines.append(f"{name}{{{rendered}}} {number(value)}" if rendered else f"{name} {number(value)}")

    def render(self) -> str:
        return "\n".join(self._lines) + "\n"
