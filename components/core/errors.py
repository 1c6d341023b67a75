"""Errors a user can act on. Each message names the field or file and what was expected."""

from __future__ import annotations


class KubeloopError(Exception):
    """Base for every error kubeloop reports to users (CLI exits non-zero with the message)."""


class SpecError(KubeloopError):
    """The project spec is invalid (unknown key, wrong type, bad value)."""


class DataError(KubeloopError):
    """The input data cannot be used (missing/empty file, wrong label, unusable column)."""


class ValidationBlocked(KubeloopError):
    """A blocking data-validation expectation failed; the report says which."""

    def __init__(self, message: str, report_path: str | None = None) -> None:
        super().__init__(message)
        self.report_path = report_path


class LeakageError(KubeloopError):
    """The split leaks information between train, validation and test."""
