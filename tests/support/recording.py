"""Recording fakes for GCP clients that have no emulator here: each call is kept, with
its request, timeout and retry, so tests assert exactly what would have been sent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Call:
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    @property
    def request(self) -> Any:
        return self.kwargs.get("request", self.args[0] if self.args else None)


@dataclass
class RecordingClient:
    """Answers each method from ``answers`` (a value, or a callable of the call)."""

    answers: dict[str, Any] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("__") or method in ("answers", "calls"):
            raise AttributeError(method)

        def attempt(*args: Any, **kwargs: Any) -> Any:
            call = Call(method, args, kwargs)
            self.calls.append(call)
            answer = self.answers[method]
            if isinstance(answer, list):
                answer = answer.pop(0) if len(answer) > 1 else answer[0]
            if isinstance(answer, BaseException):
                raise answer
            return answer(call) if callable(answer) else answer

        def record(*args: Any, **kwargs: Any) -> Any:
            # As a GAPIC method does: the retry object wraps each attempt.
            retry = kwargs.get("retry")
            return (retry(attempt) if callable(retry) else attempt)(*args, **kwargs)

        return record

    def methods(self) -> list[str]:
        return [c.method for c in self.calls]
