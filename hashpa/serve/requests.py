"""What a ``hashpa serve`` request may carry: the body read in chunks up to the upload limit, a
multipart upload or a JSON object, each field of the type it must have; every mistake a RequestError
(a 4xx status and what to change)."""

from __future__ import annotations

import asyncio
import json

from hashpa.fileio import finite


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def read_query(request, max_upload_bytes: int) -> tuple[bytes | None, dict]:
    """(the uploaded image's bytes or None, the checked fields) of a multipart or JSON request. The
    body is read in chunks and refused (413) once it is larger than the upload limit allows."""
    limit = max_upload_bytes + FORM_OVERHEAD
    too_large = RequestError(413, f"the request is larger than an upload may be: uploads are limited to {max_upload_bytes:,} bytes "
                                  "(hashpa serve --max-upload-mb)")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_SECONDS):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise too_large
    except TimeoutError:
        raise RequestError(408, f"the request body did not arrive within {BODY_SECONDS} s") from None
    kind = request.headers.get("content-type", "")
    if kind.startswith("application/json"):
        return None, checked_fields(_json_object(bytes(body)), from_form=False)
    if not kind.startswith("multipart/form-data"):
        raise RequestError(415, "send multipart/form-data (an image upload) or application/json (an indexed row)")
    return await _read_form(request, bytes(body), max_upload_bytes)


FORM_OVERHEAD = 64 * 1024  # a multipart body's boundaries and fields beyond the image itself
BODY_SECONDS = 60  # a body that takes longer to arrive is refused (408): a slow client holds no slot for long
MAX_MODES = 16  # search modes one request may ask for


def _json_object(body: bytes) -> dict:
    def no_constant(name: str):
        raise ValueError(f"{name} is not a JSON number")

    try:
        fields = json.loads(body.decode("utf-8") if body else "{}", parse_constant=no_constant)
    except UnicodeDecodeError:
        raise RequestError(400, "the JSON body is not UTF-8 text") from None
    except (ValueError, RecursionError) as error:
        raise RequestError(400, f"the JSON body cannot be read: {str(error)[:200]}") from None
    if not isinstance(fields, dict):
        raise RequestError(400, "the JSON body must be an object")
    return fields


async def _read_form(request, body: bytes, max_upload_bytes: int) -> tuple[bytes | None, dict]:
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def chunks():
        yield body

    try:
        form = await MultiPartParser(request.headers, chunks(), max_files=1, max_fields=len(FIELDS), max_part_size=max_upload_bytes).parse()
    except MultiPartException as error:
        raise RequestError(400, f"the multipart form cannot be read: {error.message}") from None
    upload = form.get("image")
    fields = checked_fields({key: value for key, value in form.multi_items() if key != "image"}, from_form=True)
    if upload is None:
        return None, fields
    if isinstance(upload, str):
        raise RequestError(400, "image must be an uploaded file, not a text field")
    data = await upload.read(max_upload_bytes + 1)
    if len(data) > max_upload_bytes:
        raise RequestError(413, f"the upload is more than {max_upload_bytes:,} bytes (hashpa serve --max-upload-mb)")
    if not data:
        raise RequestError(400, "the uploaded file is empty")
    return data, fields


FIELDS = {"index": "the name of a served index", "row": "a whole number", "k": "a whole number", "shortlist": "a whole number",
          "modes": "search modes separated by commas (or, in JSON, a list of them)"}


def checked_fields(fields: dict, from_form: bool) -> dict:
    """A search request's fields, each of the type it must have ("k": 5, "modes": ["float"] ...);
    anything else is a 400 naming the field. Form fields are text: whole numbers in digits, an
    empty field is an absent one."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise RequestError(400, f"unknown field {', '.join(map(repr, unknown))}; a search takes {', '.join(FIELDS)} (and an uploaded image)")
    checked = {}
    for name, value in fields.items():
        if from_form and isinstance(value, str) and value == "":
            continue
        if name in ("row", "k", "shortlist"):
            checked[name] = _whole_number(value, name, from_form)
        elif name == "modes":
            checked[name] = _modes(value)
        elif isinstance(value, str):
            checked[name] = value
        else:
            raise RequestError(400, f"{name} must be {FIELDS[name]}, got {_shown(value)}")
    return checked


def _whole_number(value, name: str, from_form: bool) -> int:
    if from_form and isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if not from_form and isinstance(value, int) and not isinstance(value, bool):
        return value
    raise RequestError(400, f"{name} must be a whole number, got {_shown(value)}")


def _modes(value) -> list[str]:
    if isinstance(value, str):
        modes = [m for m in value.split(",") if m]
    elif isinstance(value, list) and all(isinstance(m, str) for m in value):
        modes = value
    else:
        raise RequestError(400, f"modes must be {FIELDS['modes']}, got {_shown(value)}")
    if len(modes) > MAX_MODES:
        raise RequestError(400, f"modes names {len(modes)} modes; a request may ask for at most {MAX_MODES}")
    return list(dict.fromkeys(modes))


def _shown(value) -> str:
    text = json.dumps(finite(value), default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
