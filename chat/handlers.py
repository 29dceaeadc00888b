"""Chat events (section "Chat / AI (LedgerBrain AI)" of the event reference):
``chat`` → ``chat_typing`` → ``chat_message`` deltas (``isFinal`` false) → one
``chat_message`` with ``isFinal`` true → ``chat_stop_typing`` →
``chat_response``, or ``chat_error`` (after ``chat_stop_typing`` when
``chat_typing`` was sent: the two always come in pairs).

The turn runs in a worker thread (``services.answer_question``): the
translator may wait on a model server and the SQL runs through the query
engine, neither of which may sit on the thread that serves the ORM to the
process's other sockets. Deltas cross to the event loop through a queue, in
order. Closing the socket cancels the turn's query.

The same stream also goes, without the request id, to the room
``chat:<conversationId>`` (the owner's other tabs); a connection of the
requester that joined the room gets both copies and can tell them apart by
the id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from channels.db import database_sync_to_async

from chat import services
from chat.models import new_message_id
from chat.payloads import (
    ChatErrorPayload,
    ChatMessagePayload,
    ChatPayload,
    ChatResponsePayload,
    ConversationPayload,
)
from chat.translators import ChatContext
from credits.interface import price_of
from queryengine.interface import CancelHandle
from realtime import processes, push
from realtime.context import RequestContext
from realtime.errors import NotFound, ProtocolError, Unauthorized
from realtime.registry import registry
from realtime.rooms import Namespace, register_namespace
from realtime.workers import run_in_db_worker

log = logging.getLogger(__name__)

CATEGORY = "Chat"
_DONE = object()


class ChatFailure(ProtocolError):
    def __init__(self, code: str, message: str, conversation_id: str) -> None:
        super().__init__(message, retry_after=2 if code == "UNAVAILABLE" else None, conversationId=conversation_id)
        self.code = code


DATABASE_DOWN = "the database does not answer; nothing was charged"


def _context(data: dict[str, Any] | None) -> ChatContext:
    data = data or {}
    return ChatContext(symbol=data.get("symbol") or None, chain=data.get("chain") or None, address=data.get("address"))


def token_cost(application_id: str, tokens: int) -> int | None:
    """Credits for ``tokens`` at the price of ``chat_1k_tokens`` per thousand
    (rounded up), at most the ``chat`` price held for the request; None
    (the whole hold) when no per-token price is set."""
    rate = price_of(application_id, "chat_1k_tokens")
    if rate <= 0:
        return None
    return -(-tokens * rate // 1000)


async def _open_conversation(ctx: RequestContext, conversation_id: str, message: str) -> None:
    try:
        await database_sync_to_async(services.open_conversation)(
            ctx.user_pk, ctx.application_id, conversation_id, message
        )
    except services.ChatError as exc:
        raise ChatFailure(exc.code, exc.message, conversation_id) from None
    except Exception as exc:
        if processes.is_database_error(exc):
            raise ChatFailure("UNAVAILABLE", DATABASE_DOWN, conversation_id) from None
        raise


def _response(ids: dict[str, Any], message_id: str, result: services.ChatResult) -> dict[str, Any]:
    response: dict[str, Any] = {**ids, "messageId": message_id, "tokens": result.tokens}
    if result.sql:
        response["sql"] = result.sql
        response["params"] = result.params
        if result.query_id:
            response["queryId"] = result.query_id
    return response


@registry.on(
    "chat",
    ChatPayload,
    summary="Ask a question in plain language; the answer streams, built from real results, with its SQL.",
    replies=("chat_typing", "chat_message", "chat_stop_typing", "chat_response", "chat_error"),
    throttle="expensive",
    price="chat",
    error_event="chat_error",
    concurrent=True,
    category=CATEGORY,
)
async def chat(ctx: RequestContext, data: dict[str, Any]) -> None:
    conversation_id = data.get("conversationId") or f"c_{uuid.uuid4().hex}"
    await _open_conversation(ctx, conversation_id, data["message"])
    room = f"chat:{conversation_id}"
    message_id = new_message_id()

    async def emit(event: str, payload: dict[str, Any]) -> None:
        await ctx.send(event, payload)
        await push.broadcast(room, event, payload)

    ids = {"conversationId": conversation_id}
    await emit("chat_typing", ids)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    cancel = CancelHandle()

    def on_delta(piece: str) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, piece)

    def settle(tokens: int) -> None:
        # In the transaction that stores the answer: charged if and only if answered.
        if ctx.charge is not None:
            ctx.charge.capture_in_transaction(token_cost(ctx.application_id, tokens))

    def work() -> services.ChatResult:
        try:
            return services.answer_question(
                user_pk=ctx.user_pk,
                application_id=ctx.application_id,
                conversation_id=conversation_id,
                message=data["message"],
                context=_context(data.get("context")),
                message_id=message_id,
                on_delta=on_delta,
                cancel=cancel,
                reference=f"{ctx.sid}:{ctx.request_id}" if ctx.request_id is not None else ctx.sid,
                settle=settle,
            )
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)

    future = run_in_db_worker(work)
    try:
        while (piece := await queue.get()) is not _DONE:
            await emit(
                "chat_message",
                {**ids, "messageId": message_id, "role": "assistant", "delta": piece, "isFinal": False},
            )
        result = await future
    except asyncio.CancelledError:
        cancel.cancel()
        # Nobody awaits the worker now: retrieve its outcome so that it is
        # not logged as an error never retrieved.
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        # The turn ends here (the connection closed, or the server is
        # shutting down): typing stops for the room and, if it is still
        # open, this connection, so chat_typing keeps its pair.
        with contextlib.suppress(Exception):
            await ctx.send("chat_stop_typing", ids)
        with contextlib.suppress(Exception):
            await push.broadcast(room, "chat_stop_typing", ids)
        raise
    except services.ChatError as exc:
        await emit("chat_stop_typing", ids)
        raise ChatFailure(exc.code, exc.message, conversation_id) from None
    except Exception as exc:
        await emit("chat_stop_typing", ids)
        if processes.is_database_error(exc):
            log.warning("chat turn failed: the database does not answer (conversation %s)", conversation_id)
            raise ChatFailure("UNAVAILABLE", DATABASE_DOWN, conversation_id) from None
        log.exception("chat turn failed (conversation %s, request id %r)", conversation_id, ctx.request_id)
        raise ChatFailure("INTERNAL", "the server failed to answer; nothing was charged", conversation_id) from None
    await emit(
        "chat_message",
        {**ids, "messageId": message_id, "role": "assistant", "delta": "", "content": result.content, "isFinal": True},
    )
    await emit("chat_stop_typing", ids)
    if ctx.charge is not None and not ctx.charge.settled:
        ctx.meter.cost = await database_sync_to_async(token_cost)(ctx.application_id, result.tokens)
    await emit("chat_response", _response(ids, message_id, result))


for _name, _payload, _summary in [
    ("chat_typing", ConversationPayload, "The assistant started working on an answer."),
    (
        "chat_message",
        ChatMessagePayload,
        "A piece of the answer (isFinal false), then the whole answer (isFinal true).",
    ),
    ("chat_stop_typing", ConversationPayload, "The assistant stopped; always follows chat_typing."),
    ("chat_response", ChatResponsePayload, "The answer is complete: message id, tokens and the SQL that produced it."),
    ("chat_error", ChatErrorPayload, "The question could not be answered (UNAUTHORIZED, TIMEOUT, INTERNAL, ...)."),
]:
    registry.outbound(_name, _payload, summary=_summary, category=CATEGORY)


async def _authorize_chat_room(ctx: RequestContext, conversation_id: str) -> None:
    allowed = await database_sync_to_async(services.may_join)(ctx.user_pk, conversation_id)
    if allowed is None:
        raise NotFound("no such conversation", room=f"chat:{conversation_id}")
    if not allowed:
        raise Unauthorized("a conversation's room is open only to its owner", room=f"chat:{conversation_id}")


register_namespace(
    Namespace(
        "chat",
        _authorize_chat_room,
        presence_events=True,
        description="A conversation's owner: the chat stream of the conversation (every tab of the owner).",
    )
)
