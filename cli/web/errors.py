"""Typed errors of the server, and the HTTP status each library error becomes."""

from __future__ import annotations

from circuitcat.catalog.errors import (
    CircuitcatError,
    InvalidRowsError,
    QueryTimeoutError,
    ReadOnlyViolationError,
    StoreAuthError,
    StoreUnavailableError,
)

from .reads import NotFoundError


class AuthError(CircuitcatError):
    """A write without a valid token, or to a server started without tokens."""


# Most specific first: the first class an error is an instance of decides.
STATUS: list[tuple[type[CircuitcatError], int]] = [
    (AuthError, 401),
    (NotFoundError, 404),
    (ReadOnlyViolationError, 403),
    (QueryTimeoutError, 504),
    (InvalidRowsError, 422),
    (StoreAuthError, 503),
    (StoreUnavailableError, 503),
]


def status_of(error: CircuitcatError) -> int:
    """The HTTP status for a library error; 400 for anything else the caller asked wrongly."""
    return next((code for kind, code in STATUS if isinstance(error, kind)), 400)
