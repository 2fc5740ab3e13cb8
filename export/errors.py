"""Errors of the export stage. Both are user-facing (:class:`SerEdgeError`): the CLI prints one
line and exits 2."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ser_edge.runtime.errors import SerEdgeError

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import ExportReport


class ExportError(SerEdgeError, RuntimeError):
    """An artifact could not be produced or failed a structural check (symbolic axes, graph
    checker, quantised ops, metadata round trip). Never overridden by ``--no-gate``."""


class GateFailure(ExportError):
    """An artifact is structurally valid but its parity with PyTorch fp32 is outside the gates.
    Carries the full :class:`ExportReport` so callers can still print the table."""

    def __init__(self, message: str, report: ExportReport | Any = None):
        super().__init__(message)
        self.report = report
