"""Answering a chat question: conversation, translation, query, answer.

``answer_question`` is synchronous and blocks for the whole turn (the
translator may call a model server, and the SQL runs through
``queryengine.services.run_query``): call it from a worker thread, never
from the thread that serves the ORM to the other sockets.

Settings: LEDGERCORE_CHAT_TRANSLATOR (builtin), LEDGERCORE_CHAT_HISTORY_TURNS
(6), and the openai translator's LEDGERCORE_CHAT_OPENAI_* (see
chat.translators.openai).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from chat import answers
from chat.models import Conversation, Message, new_message_id
from chat.translators import ChatContext, Translation, Translator, TranslatorUnavailable, Turn, get_translator
from compliance.interface import analyse_address
from queryengine import interface as queries
from queryengine.interface import CancelHandle
from realtime.protocol import now_ms

log = logging.getLogger(__name__)

UNAUTHORIZED = "UNAUTHORIZED"
NOT_FOUND = "NOT_FOUND"
INTERNAL = "INTERNAL"
# Query failures that are the asker's or the moment's, passed on as they are.
PASSED_ON = {queries.errors.TIMEOUT, queries.errors.RATE_LIMITED, queries.errors.CANCELLED, queries.errors.UNAVAILABLE}
# Refusals of a statement a translator produced: answered honestly, not raised.
REFUSED = {queries.errors.VALIDATION_FAILED, queries.errors.UNAUTHORIZED}

DeltaCallback = Callable[[str], None]


class ChatError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class ChatResult:
    conversation_id: str
    message_id: str
    content: str
    tokens: int
    sql: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    query_id: str = ""
    kind: str = "sql"
    rows: list[list[Any]] = field(default_factory=list)
    schema: list[dict[str, str]] = field(default_factory=list)


def open_conversation(user_pk: int, application_id: str, conversation_id: str, title: str = "") -> Conversation:
    """The caller's conversation with this id, created on first use;
    ChatError UNAUTHORIZED when it is someone else's (or in another
    application of the caller's)."""
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None:
        try:
            with transaction.atomic():
                return Conversation.objects.create(
                    id=conversation_id, owner_id=user_pk, application_id=application_id, title=title[:200]
                )
        except IntegrityError:  # created concurrently
            conversation = Conversation.objects.get(pk=conversation_id)
    if conversation.owner_id != user_pk:
        raise ChatError(UNAUTHORIZED, "this conversation belongs to someone else")
    if conversation.application_id != application_id:
        raise ChatError(UNAUTHORIZED, "this conversation belongs to another application")
    return conversation


def may_join(user_pk: int, conversation_id: str) -> bool | None:
    """True: the caller owns it; False: someone else does; None: no such conversation."""
    owner = Conversation.objects.filter(pk=conversation_id).values_list("owner_id", flat=True).first()
    if owner is None:
        return None
    return owner == user_pk


def history(conversation_id: str, turns: int | None = None) -> list[Turn]:
    """The last turns (question and what it was understood as), oldest first."""
    limit = turns if turns is not None else int(getattr(settings, "LEDGERCORE_CHAT_HISTORY_TURNS", 6))
    messages = list(Message.objects.filter(conversation_id=conversation_id).order_by("-created_at", "-id")[: limit * 2])
    messages.reverse()
    result: list[Turn] = []
    question = ""
    for message in messages:
        if message.role == Message.Role.USER:
            question = message.content
        elif not message.error_code:
            result.append(Turn(question=question, slots=message.slots, sql=message.sql))
    return result


def answer_question(
    *,
    user_pk: int,
    application_id: str,
    conversation_id: str,
    message: str,
    context: ChatContext | None = None,
    message_id: str | None = None,
    translator: Translator | None = None,
    on_delta: DeltaCallback | None = None,
    cancel: CancelHandle | None = None,
    clock_ms: int | None = None,
    reference: str = "",
    settle: Callable[[int], None] | None = None,
) -> ChatResult:
    """One turn: store the question, translate it, run the SQL as the caller
    (or the analysis), compose the answer from the results, stream it
    through ``on_delta`` and store it. ``settle(tokens)`` runs in the
    transaction that stores the answer (the turn's charge is captured
    there). Raises ChatError with a wire code."""
    started = time.monotonic()
    message_id = message_id or new_message_id()
    conversation = open_conversation(user_pk, application_id, conversation_id, title=message)
    turns = history(conversation.pk)
    Message.objects.create(conversation=conversation, role=Message.Role.USER, content=message)
    translator = translator or get_translator()
    timings: dict[str, int] = {}
    try:
        translation = translator.translate(
            message,
            history=turns,
            context=context or ChatContext(),
            now_ms=clock_ms if clock_ms is not None else now_ms(),
            application_id=application_id,
        )
    except TranslatorUnavailable as exc:
        log.warning("chat translator %s failed: %s", translator.name, exc)
        _store_failure(conversation, message_id, translator.name, INTERNAL, started)
        raise ChatError(INTERNAL, f"the {translator.name} translator failed: {exc}") from None
    timings["translate_ms"] = int((time.monotonic() - started) * 1000)

    result = ChatResult(conversation.pk, message_id, "", translation.tokens, kind=translation.kind)
    try:
        if translation.kind in ("clarify", "refuse"):
            content = translation.text.rstrip() + "\n"
        elif translation.kind == "analysis":
            content = _analysis(translation)
        else:
            content = _run_sql(translation, result, user_pk, application_id, cancel, reference or message_id)
    except ChatError as exc:
        _store_failure(conversation, message_id, translator.name, exc.code, started, translation=translation)
        raise
    timings["query_ms"] = int((time.monotonic() - started) * 1000) - timings["translate_ms"]

    for piece in answers.deltas(content):
        if on_delta is not None:
            on_delta(piece)
    result.content = content
    if translator.name == "builtin" or not result.tokens:
        result.tokens = answers.count_tokens(content)
    with transaction.atomic():
        _store_answer(conversation, message_id, content, result, translator.name, translation, timings, started)
        if settle is not None:
            settle(result.tokens)
    return result


def _store_answer(
    conversation: Conversation,
    message_id: str,
    content: str,
    result: ChatResult,
    translator_name: str,
    translation: Translation,
    timings: dict[str, int],
    started: float,
) -> None:
    Message.objects.create(
        id=message_id,
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        content=content,
        sql=result.sql,
        params=result.params or None,
        query_id=result.query_id,
        translator=translator_name,
        slots=translation.slots or None,
        tokens=result.tokens,
        translate_ms=timings["translate_ms"],
        query_ms=max(timings["query_ms"], 0),
        total_ms=int((time.monotonic() - started) * 1000),
    )
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())


def _store_failure(
    conversation: Conversation,
    message_id: str,
    translator: str,
    code: str,
    started: float,
    translation: Translation | None = None,
) -> None:
    Message.objects.create(
        id=message_id,
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        content="",
        sql=translation.sql if translation else "",
        params=(translation.params or None) if translation else None,
        translator=translator,
        error_code=code,
        total_ms=int((time.monotonic() - started) * 1000),
    )


def _analysis(translation: Translation) -> str:
    try:
        result = analyse_address(translation.chain, translation.address, hops=2)
    except Exception:
        log.exception("chat risk analysis of %s failed", translation.address)
        raise ChatError(INTERNAL, "the compliance analysis failed") from None
    return answers.compose_analysis(result)


def _run_sql(
    translation: Translation,
    result: ChatResult,
    user_pk: int,
    application_id: str,
    cancel: CancelHandle | None,
    reference: str,
) -> str:
    rows: list[list[Any]] = []
    schema: list[dict[str, str]] = []

    def chunk(batch: list[list[Any]], columns: list[dict[str, str]]) -> None:
        rows.extend(batch)
        schema[:] = columns

    result.sql, result.params = translation.sql, dict(translation.params)
    try:
        outcome = queries.run_query(
            user_pk=user_pk,
            application_id=application_id,
            sql=translation.sql,
            params=translation.params or None,
            cancel=cancel,
            on_chunk=chunk,
            reference=f"chat:{reference}"[:200],
        )
    except queries.QueryFailed as failure:
        result.query_id = failure.query_id or ""
        if failure.code in REFUSED:
            return (
                f"The statement I produced was refused by the query engine ({failure.code}: {failure.message}); "
                "nothing was run. Try rephrasing the question.\n"
            )
        code = failure.code if failure.code in PASSED_ON else INTERNAL
        raise ChatError(code, failure.message) from None
    result.query_id = outcome.query_id
    result.rows, result.schema = rows, schema or outcome.schema
    return answers.compose(translation, result.schema, rows, truncated=outcome.truncated)
