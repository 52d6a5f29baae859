"""Errors raised by the testbed: each names the step that failed and what to do next."""

from __future__ import annotations


class TestbedError(RuntimeError):
    """A testbed step failed. ``str()`` reads as "<step>: <what went wrong>. <what to do>"."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, step: str, problem: str, remedy: str = "") -> None:
        self.step = step
        self.problem = problem
        self.remedy = remedy
        text = f"testbed step '{step}' failed: {problem}"
        if remedy:
            text += f"\n  what to do: {remedy}"
        super().__init__(text)
