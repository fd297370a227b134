"""Errors as OpenAI-style JSON bodies, so existing clients show them as they show OpenAI's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.responses import JSONResponse


class APIError(Exception):
    """A request the server refuses: HTTP status, OpenAI error type, the offending parameter."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        kind: str = "invalid_request_error",
        code: str | None = None,
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.kind, self.code = status, message, param, kind, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def validation_error(problems: Sequence[Any]) -> APIError:
    """One 400 for a body that does not validate: every unknown field named, else the first problem, with
    its place written as a client would write it (messages[0].content[0].input_audio.data)."""
    unknown = [_place(problem["loc"]) for problem in problems if problem.get("type") == "extra_forbidden"]
    if unknown:
        names = ", ".join(f"'{name}'" for name in unknown)
        return APIError(
            400,
            f"unknown field{'s' if len(unknown) > 1 else ''} {names}: not part of this endpoint's "
            "request (check the spelling; unsupported options are refused, not ignored)",
            unknown[0],
        )
    problem = problems[0] if problems else {"loc": (), "msg": "invalid request"}
    if problem.get("type") == "json_invalid":
        return APIError(400, "the request body is not valid JSON")
    where = _place(problem.get("loc", ())) or None
    if where is None:
        return APIError(
            400,
            "the request body is missing: expected a JSON object"
            if problem.get("type") == "missing"
            else "the request body must be a JSON object",
        )
    return APIError(400, f"{where}: {problem.get('msg')}", where)


def _place(loc) -> str:
    """('body', 'messages', 0, '<user>', 'content') -> 'messages[0].content' (union tags, "<...>", left out)."""
    place = ""
    for part in loc:
        if isinstance(part, int):
            place += f"[{part}]"
        elif part != "body" and not (part.startswith("<") and part.endswith(">")):
            place += f".{part}" if place else part
    return place
