"""The project's own exception tree.

Backends translate vendor errors into these at the seam
(``raise BackendUnavailableError(...) from exc``); the HTTP function and the CLI
map them to status codes and exit codes. Messages never hold a full card number.
"""

from __future__ import annotations


class FraudMlopsError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(FraudMlopsError):
    """The runtime config is missing, malformed or inconsistent."""


class InvalidInputError(FraudMlopsError):
    """Input that the caller can fix: a bad file, a bad field, a bad request.

    ``location`` names where: ``file:line:column`` for data, the field for requests.
    """

    def __init__(self, message: str, *, location: str | None = None) -> None:
        self.location = location
        self.detail = message
        super().__init__(f"{location}: {message}" if location else message)


class NotFoundError(FraudMlopsError):
    """The thing asked for does not exist (an unknown card, a missing snapshot)."""


class BackendUnavailableError(FraudMlopsError):
    """A store, a model or a service cannot answer now; retrying later may work."""


class ConflictError(FraudMlopsError):
    """The request clashes with the current state (e.g. another run holds the lock)."""


class PipelineFailedError(FraudMlopsError):
    """A training pipeline or a DAG run did not finish successfully."""
