"""Request bodies read strictly: a JSON object, or a multipart form whose every field is named and expected.

A body is refused by size as it arrives (its declared Content-Length first, then the bytes counted as they
come), never after it was spooled whole; a JSON body is refused by its nesting depth before it is parsed; and
every text in it must be valid Unicode, checked here once for every endpoint."""

from __future__ import annotations

import json
import re

import numpy as np
from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.types import Message

from voxport.serve.errors import APIError
from voxport.serve.fields import valid_text

MAX_JSON_DEPTH = 32  # OpenAI's bodies nest 6 deep (messages[0].content[0].input_audio.data)
FORM_TEXT_BYTES = 64 * 2**10  # a form's text fields and part headers, besides its uploads
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


async def form_fields(
    request: Request, texts: set[str], uploads: set[str], limit: int
) -> tuple[dict[str, str], dict[str, bytes]]:
    """The text fields and uploaded files (each at most `limit` bytes) present in a multipart body; any field
    not in `texts` or `uploads` is refused by name."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise APIError(400, f"expected a multipart/form-data body with {', '.join(sorted(uploads | texts))}")
    counted = Request(request.scope, _counted(request, limit * len(uploads) + FORM_TEXT_BYTES))
    try:
        async with counted.form(max_files=len(uploads), max_fields=len(texts) + len(uploads)) as form:
            unknown = sorted(set(form.keys()) - texts - uploads)
            if unknown:
                raise APIError(
                    400,
                    f"unknown field {', '.join(unknown)}: expected {', '.join(sorted(texts | uploads))}",
                    unknown[0],
                )
            return _texts(form, texts), await _uploads(form, uploads, limit)
    except APIError:
        raise
    except Exception as error:
        raise APIError(400, f"the multipart body cannot be read: {error}") from None


def _texts(form, names: set[str]) -> dict[str, str]:
    fields = {}
    for name in names:
        value = form.get(name)
        if value is not None and not isinstance(value, str):
            raise APIError(400, f"{name} must be a text field, not a file", name)
        if value is not None:
            fields[name] = valid_text(value, name)
    return fields


async def _uploads(form, names: set[str], limit: int) -> dict[str, bytes]:
    files = {}
    for name in names:
        upload = form.get(name)
        if upload is not None and not isinstance(upload, UploadFile):
            raise APIError(400, f"{name} must be a file upload, not a text field", name)
        if upload is not None:
            files[name] = await upload.read(limit + 1)
            if len(files[name]) > limit:
                raise APIError(413, f"{name} holds more than {limit} bytes; the limit is {limit}", name)
    return files


async def json_object(request: Request, limit: int) -> dict:
    """The body as a JSON object of at most `limit` bytes, nested at most MAX_JSON_DEPTH deep, all its text
    valid Unicode."""
    receive, raw = _counted(request, limit), bytearray()
    while (message := await receive())["type"] == "http.request":
        raw += message.get("body", b"")
        if not message.get("more_body", False):
            break
    if not raw:
        raise APIError(400, "the request body is missing: expected a JSON object")
    _refuse_deep(bytes(raw))
    try:
        body = json.loads(raw)
    except ValueError:
        raise APIError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    _check_texts(body, "")
    return body


def _counted(request: Request, limit: int):
    """`request`'s receive, refusing the body with a 413 as soon as it is known to be over `limit` bytes: at
    once by its Content-Length, else when the bytes that came pass it."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"the request body is {int(declared)} bytes; the limit is {limit}")
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise APIError(413, f"the request body is over {limit} bytes, the limit")
        return message

    return receive


def _refuse_deep(raw: bytes) -> None:
    """Count brackets outside strings, so a body nested 100,000 deep is refused without recursing into it."""
    skeleton = np.frombuffer(_JSON_STRING.sub(b"", raw), np.uint8)
    steps = np.isin(skeleton, (ord("["), ord("{"))).astype(np.int32) - np.isin(skeleton, (ord("]"), ord("}")))
    if skeleton.size and int(np.cumsum(steps).max()) > MAX_JSON_DEPTH:
        raise APIError(
            400, f"the request body nests deeper than {MAX_JSON_DEPTH} levels: expected an OpenAI request body"
        )


def _check_texts(value, place: str) -> None:
    """Every string of a parsed body, keys included, through valid_text, named as a client writes it."""
    if isinstance(value, str):
        valid_text(value, place)
    elif isinstance(value, dict):
        for key, item in value.items():
            valid_text(key, place)
            _check_texts(item, f"{place}.{key}" if place else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_texts(item, f"{place}[{index}]")
