"""failure_detail: a crash becomes bounded, informative record text."""

from __future__ import annotations

import pytest

from probes.plan import failure_detail


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        pytest.param(KeyError("x"), "KeyError: 'x'", id="plain"),
        pytest.param(ExceptionGroup("g", [OSError("lost")]), "OSError: lost", id="taskgroup-one"),
        pytest.param(
            ExceptionGroup("g", [ExceptionGroup("inner", [ValueError("v")]), OSError("o")]),
            "ValueError: v (and 1 more)",
            id="nested-groups",
        ),
        pytest.param(RuntimeError("x" * 1000), "RuntimeError: " + "x" * 283 + "...", id="bounded"),
    ],
)
def test_failure_detail(exc: BaseException, text: str) -> None:
    assert failure_detail(exc) == text
    assert len(failure_detail(exc)) <= 300
