"""HTTP pieces the master and the agent share: the request checks every v1 endpoint makes
(reference §0.2) and JSON (or JSONP) answers for the read endpoints."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

JSON = "application/json"
_encode = msgspec.json.Encoder().encode


def check_post_json(request: web.Request) -> web.Response | None:
    """405 for other methods, 400 without a content type, 415 for a non-JSON body, 406
    when the client accepts no JSON; None when the request may go on."""
    if request.method != "POST":
        return web.Response(status=405, headers={"Allow": "POST"}, text="Expecting 'POST'")
    content_type = request.headers.get("Content-Type")
    if not content_type:
        return web.Response(status=400, text="Expecting 'Content-Type' to be present")
    if content_type.split(";")[0].strip().lower() != JSON:
        return web.Response(
            status=415, text=f"Content-Type {content_type!r} is not supported; use {JSON}"
        )
    accept = request.headers.get("Accept")
    if accept and not any(
        part.split(";")[0].strip() in (JSON, "*/*", "application/*") for part in accept.split(",")
    ):
        return web.Response(status=406, text=f"Accept {accept!r} allows no {JSON} response")
    return None


def json_response(request: web.Request, data: Any, status: int = 200) -> web.Response:
    """JSON, or JSONP when `?jsonp=callback` is given (the Mesos web UI uses it); the
    callback must be a plain function name, so nothing else is reflected as script."""
    callback = request.query.get("jsonp")
    body = _encode(data)
    if callback:
        if not callback.replace("_", "").replace(".", "").isalnum():
            return web.Response(status=400, text="'jsonp' must be a plain function name")
        return web.Response(
            status=status,
            body=callback.encode() + b"(" + body + b");",
            content_type="text/javascript",
        )
    return web.Response(status=status, body=body, content_type=JSON)
