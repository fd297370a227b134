"""Request bodies read strictly: a JSON object, or a multipart form whose every field is named and expected."""

from __future__ import annotations

import json

from fastapi import Request
from starlette.datastructures import UploadFile

from voxport.serve.errors import APIError


async def form_fields(request: Request, texts: set[str], uploads: set[str], limit: int
                      ) -> tuple[dict[str, str], dict[str, bytes]]:
    """The text fields and uploaded files (each read up to `limit` + 1 bytes) present in a multipart body; any
    field not in `texts` or `uploads` is refused by name."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise APIError(400, f"expected a multipart/form-data body with {', '.join(sorted(uploads | texts))}")
    try:
        form = await request.form(max_files=len(uploads), max_fields=len(texts) + len(uploads))
    except Exception as error:  # noqa: BLE001 (a malformed body, whatever the parser's complaint)
        raise APIError(400, f"the multipart body cannot be read: {error}") from None
    unknown = sorted(set(form.keys()) - texts - uploads)
    if unknown:
        raise APIError(400, f"unknown field {', '.join(unknown)}: expected {', '.join(sorted(texts | uploads))}",
                       unknown[0])
    fields, files = {}, {}
    for name in texts:
        value = form.get(name)
        if value is not None and not isinstance(value, str):
            raise APIError(400, f"{name} must be a text field, not a file", name)
        if value is not None:
            fields[name] = value
    for name in uploads:
        upload = form.get(name)
        if upload is not None and not isinstance(upload, UploadFile):
            raise APIError(400, f"{name} must be a file upload, not a text field", name)
        if upload is not None:
            files[name] = await upload.read(limit + 1)  # one byte over tells a larger upload
    return fields, files


async def json_object(request: Request) -> dict:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise APIError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    return body
