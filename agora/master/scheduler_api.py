"""`POST /api/v1/scheduler` and the agent WebSocket: HTTP in, core events out.

Status codes follow reference §0.2: 405 for other methods, 400 for a missing content
type or a malformed body (the message names the field), 415 for a non-JSON body, 406
when the client accepts no JSON, 202 for calls taken, 200 + RecordIO for SUBSCRIBE.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import WSMsgType, web

from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.master.service import AgentLink, FrameworkStream, MasterService
from agora.runtime.http import JSON, check_post_json
from agora.wire import agent_channel as channel
from agora.wire.mesos_json import WireError
from agora.wire.recordio import encode_record
from agora.wire.scheduler import decode_json, encode_json, error_record, parse_call

log = logging.getLogger("agora.master")

STREAM_HEADER = "Mesos-Stream-Id"
SERVICE_KEY = web.AppKey("service", MasterService)


def service_of(request: web.Request) -> MasterService:
    return request.app[SERVICE_KEY]


def bad_request(message: str) -> web.Response:
    return web.Response(status=400, text=message)


async def read_json_object(request: web.Request) -> Mapping[str, Any]:
    body = decode_json(await request.read())
    if not isinstance(body, Mapping):
        raise WireError("the request body must be a JSON object")
    return body


async def scheduler(request: web.Request) -> web.StreamResponse:
    refusal = check_post_json(request)
    if refusal is not None:
        return refusal
    service = service_of(request)
    stream_id = request.headers.get(STREAM_HEADER)
    try:
        body = await read_json_object(request)
        event = parse_call(body, service.next_request_id(), stream_id)
    except WireError as error:
        return bad_request(str(error))
    if isinstance(event, ev.Subscribe) and stream_id is not None:
        return bad_request(f"SUBSCRIBE must not carry a '{STREAM_HEADER}' header")
    answers = await service.call(event)
    for answer in answers:
        if isinstance(answer, cmd.OpenStream):
            stream = service.streams.get(answer.framework_id)
            if stream is not None and stream.stream_id == answer.stream_id:
                return await _serve_stream(request, service, stream)
        if isinstance(answer, cmd.RefuseSubscription):
            return await _refuse(request, answer.message)
        if isinstance(answer, cmd.Respond):
            return _respond(answer)
    return web.Response(status=500, text="the master gave no answer to this call")


def _respond(answer: cmd.Respond) -> web.Response:
    if answer.body is not None:
        return web.Response(status=answer.status, body=encode_json(answer.body), content_type=JSON)
    if answer.status == 202:
        return web.Response(status=202)
    return web.Response(status=answer.status, text=answer.message)


def _stream_response(stream_id: str | None = None) -> web.StreamResponse:
    response = web.StreamResponse(status=200)
    response.content_type = JSON
    if stream_id is not None:
        response.headers[STREAM_HEADER] = stream_id
    response.enable_chunked_encoding()
    return response


async def _refuse(request: web.Request, message: str) -> web.StreamResponse:
    response = _stream_response()
    await response.prepare(request)
    await response.write(encode_record(encode_json(error_record(message))))
    await response.write_eof()
    return response


async def _serve_stream(
    request: web.Request, service: MasterService, stream: FrameworkStream
) -> web.StreamResponse:
    response = _stream_response(stream.stream_id)
    try:
        await response.prepare(request)
        await stream.drain_into(response)
        await response.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        service.stream_ended(stream)
        raise
    service.stream_ended(stream)
    return response


# -------------------------------------------------------------------- agents


async def agent_socket(request: web.Request) -> web.StreamResponse:
    version = request.headers.get(channel.PROTOCOL_HEADER)
    if version != channel.PROTOCOL_VERSION:
        return bad_request(
            f"agent protocol {version!r} is not spoken here "
            f"(send '{channel.PROTOCOL_HEADER}: {channel.PROTOCOL_VERSION}')"
        )
    service = service_of(request)
    ws = web.WebSocketResponse(max_msg_size=256 * 1024 * 1024)
    await ws.prepare(request)
    peer = request.transport.get_extra_info("peername") if request.transport else None
    link = AgentLink(service.next_connection_id(), ws, peer[0] if peer else "")
    service.link_opened(link)
    writer = asyncio.get_running_loop().create_task(link.run_writer())
    try:
        async for message in ws:
            if message.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                if not _take_frame(service, link, message.data):
                    break
            elif message.type == WSMsgType.ERROR:
                break
    finally:
        writer.cancel()
        service.link_closed(link)
        if not ws.closed:
            await ws.close()
    return ws


def _take_frame(service: MasterService, link: AgentLink, data: bytes | str) -> bool:
    try:
        if isinstance(data, str):
            messages = decode_json(data.encode(), "agent frame")
            if not isinstance(messages, list):
                raise WireError("agent channel frame must be a list of maps")
        else:
            messages = channel.decode_frame(data)
        for message in messages:
            event = channel.master_event_from_json(message, link.connection_id, link.agent_id)
            if event is not None:
                service.dispatch(event)
    except (WireError, KeyError, TypeError, AttributeError, ValueError) as error:
        log.warning("dropping agent connection %s: %s", link.connection_id, error)
        link.close(f"bad frame: {error}")
        return False
    return True
