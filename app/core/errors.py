"""The project's one exception tree, with each class's HTTP status and CLI exit code.

Backends translate vendor errors into these at the seam
(``raise BackendUnavailableError(...) from exc``). The HTTP function and the CLI read
``http_status`` and ``exit_code`` off the class, so the two channels cannot drift
apart; README's error table is tested against :func:`error_table`. Messages never
hold a full card number.

Errors also cross process boundaries (an Airflow task, a KFP step) as data:
:meth:`FraudMlopsError.to_dict` and :func:`from_dict` keep the class, the message and
the location, so nobody parses a traceback to learn what went wrong.
"""

from __future__ import annotations

from typing import Any, ClassVar


class FraudMlopsError(Exception):
    """Root of every error this project raises on purpose."""

    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1
    # True when the same request may succeed later unchanged (a store was down, a lock
    # was held): a trigger retries the work instead of dead-lettering it.
    retryable: ClassVar[bool] = False

    def __init__(self, message: str = "", *, location: str | None = None) -> None:
        self.location = location
        self.detail = message
        super().__init__(f"{location}: {message}" if location else message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "error_class": type(self).__name__,
            "message": self.detail,
            "location": self.location,
        }


class ConfigError(FraudMlopsError):
    """The runtime config is missing, malformed or inconsistent.

    The operator fixes it (exit 2); to an HTTP caller it is the service that cannot
    answer (503), never the caller's fault.
    """

    http_status = 503
    exit_code = 2


class InvalidInputError(FraudMlopsError):
    """Input that the caller can fix: a bad file, a bad field, a bad request.

    ``location`` names where: ``file:line:column`` for data, the field for requests.
    """

    http_status = 400
    exit_code = 2


class NotFoundError(FraudMlopsError):
    """The thing asked for does not exist (an unknown card, a missing snapshot)."""

    http_status = 404
    exit_code = 3


class BackendUnavailableError(FraudMlopsError):
    """A store, a model or a service cannot answer now; retrying later may work."""

    http_status = 503
    exit_code = 4
    retryable = True


class ConflictError(FraudMlopsError):
    """The request clashes with the current state (e.g. another run holds the lock)."""

    http_status = 409
    exit_code = 5
    retryable = True


class PipelineFailedError(FraudMlopsError):
    """A training pipeline or a DAG run did not finish successfully.

    ``failure`` is the structured cause when one is known: the failed task or step and
    the project error it raised (see :class:`app.core.records.RunFailure`).
    """

    http_status = 500
    exit_code = 1

    def __init__(
        self, message: str = "", *, location: str | None = None, failure: Any = None
    ) -> None:
        super().__init__(message, location=location)
        self.failure = failure


ERROR_CLASSES: tuple[type[FraudMlopsError], ...] = (
    FraudMlopsError,
    ConfigError,
    InvalidInputError,
    NotFoundError,
    BackendUnavailableError,
    ConflictError,
    PipelineFailedError,
)
_BY_NAME = {cls.__name__: cls for cls in ERROR_CLASSES}


def by_name(name: str | None) -> type[FraudMlopsError] | None:
    """The project error class called ``name``, or None for anything else."""
    return _BY_NAME.get(name or "")


def from_dict(data: dict[str, Any]) -> FraudMlopsError:
    """Rebuild an error that :meth:`FraudMlopsError.to_dict` wrote in another process.

    An unknown class (a vendor or Python error that escaped a task) becomes the root
    class, its original name kept in the message.
    """
    name = str(data.get("error_class") or "")
    message = str(data.get("message") or "")
    location = data.get("location")
    cls = by_name(name)
    if cls is None:
        return FraudMlopsError(f"{name}: {message}" if name else message, location=location)
    return cls(message, location=location)


def http_status_for(exc: BaseException) -> int:
    return exc.http_status if isinstance(exc, FraudMlopsError) else 500


def exit_code_for(exc: BaseException) -> int:
    return exc.exit_code if isinstance(exc, FraudMlopsError) else 1


def error_table() -> list[tuple[str, int, int, bool]]:
    """(class, HTTP status, exit code, retryable) for every class: README's table."""
    return [(c.__name__, c.http_status, c.exit_code, c.retryable) for c in ERROR_CLASSES]
