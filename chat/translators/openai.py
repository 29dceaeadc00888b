"""The ``openai`` translator: any OpenAI-compatible chat-completions server
(OpenAI, vLLM, llama.cpp server, Ollama).

The prompt carries the query catalog's public schema (tables, columns,
types, descriptions), the rules of the SQL dialect, a few question/answer
examples (the built-in translator's own statements for them, so the examples
are always valid for the current catalog) and the conversation's earlier
turns. The model answers with one JSON object: ``{"sql", "params",
"description"}`` or ``{"clarify"}``. The response is streamed (server-sent
events, ``stream: true``) and the token count is the server's own usage
report (``stream_options.include_usage``).

The refusal contract is the built-in translator's: a question that
``chat.refusals`` refuses (a change, another user's or tenant's data,
outside the data) is refused before the model is asked, and the model may
itself answer ``{"refuse": CODE}`` with one of the documented codes (any
other code is a broken answer). The answer restates what was computed
before the numbers: the model's description, then the statement read back
through sqlglot with its bound values (``chat.restate``), so a description
that does not match the SQL shows.

The statement is compiled by the query engine's compiler before anything
runs; one it refuses becomes an honest answer that nothing was run. A
server that cannot be reached, answers an error, or breaks off before
``[DONE]`` raises ``TranslatorUnavailable`` (the turn fails with INTERNAL
and is refunded).

The wire is the ``openai`` package's synchronous client (HTTP and the
server-sent events), one per turn, without retries, on the worker thread
the turn already runs on: the stream is read chunk by chunk, so nothing
blocks the event loop. ``events`` is the one place its errors become
``TranslatorUnavailable``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from openai import APIConnectionError, APIError, APIStatusError, APITimeoutError, OpenAI, omit

from chat import refusals
from chat.restate import restate
from chat.translators.base import ChatContext, ProgressCallback, Translation, TranslatorUnavailable, Turn
from chat.translators.semantic import SemanticTranslator
from chat.vocabulary import Vocabulary
from queryengine.interface import Caller, QueryError, catalog, compile_query

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

log = logging.getLogger(__name__)

MAX_RESPONSE_CHARS = 50_000
NO_API_KEY = "none"  # never sent: the request omits the Authorization header
EXAMPLES = (
    "top 10 ethereum addresses by outgoing volume last week",
    "show BTC-USD 1m candles for the last hour",
    "how many credits did I spend on queries this month",
    "how many sanctioned addresses are there on bitcoin",
)
RULES = """You translate questions about a blockchain data platform into ONE read-only SQL SELECT
(PostgreSQL syntax) over the tables below, and nothing else.
- Use only these tables and columns. Private tables hold only the asker's rows already.
- Bind every value taken from the question as a :name parameter and give it in "params"; never
  write such values into the SQL text.
- Times in columns named ts, first_seen, last_seen are epoch milliseconds (UTC); compare them
  with integer parameters computed from the current time given below.
- Never write INSERT, UPDATE, DELETE, DDL or more than one statement; never read other tables.
- If the question is ambiguous or the tables cannot answer it, ask a short clarifying question.
- Refuse, with no SQL, a request to change anything (REFUSED_CHANGE), a question about another
  user's or tenant's data (REFUSED_OTHERS) or a question the tables cannot answer at all, such as
  news, advice, forecasts or writing (REFUSED_OUTSIDE).
Answer with one JSON object and nothing else, one of
{"sql": "...", "params": {...}, "description": "what the rows are: measure, filters, time window"}
{"clarify": "your question back"}
{"refuse": "REFUSED_CHANGE" | "REFUSED_OTHERS" | "REFUSED_OUTSIDE"}"""


@dataclass
class StreamResult:
    content: str
    usage: dict[str, Any] | None
    finish_reason: str | None


def _cause(exc: Exception) -> str:
    """The transport's own words (refused, reset, timed out) over the library's
    generic "Connection error."."""
    return str(exc.__cause__ or exc)


def _json_object(text: str) -> dict[str, Any] | None:
    fenced = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.DOTALL)
    candidate = fenced.group(1) if fenced else text[text.find("{") : text.rfind("}") + 1]
    try:
        value = json.loads(candidate)
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None


class OpenAITranslator:
    name = "openai"

    def __init__(self, base_url: str, model: str, api_key: str = "", timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout

    @classmethod
    def from_settings(cls) -> OpenAITranslator:
        return cls(
            base_url=str(getattr(settings, "LEDGERCORE_CHAT_OPENAI_BASE_URL", "https://api.openai.com/v1")),
            model=str(getattr(settings, "LEDGERCORE_CHAT_OPENAI_MODEL", "gpt-4o-mini")),
            api_key=str(getattr(settings, "LEDGERCORE_CHAT_OPENAI_API_KEY", "") or ""),
            timeout=float(getattr(settings, "LEDGERCORE_CHAT_OPENAI_TIMEOUT_SECONDS", 60.0)),
        )

    # ------------------------------------------------------------ prompt

    def schema_text(self) -> str:
        lines = []
        for table in catalog.describe():
            lines.append(f"table {table['name']} ({table['scope']}): {table['description']}")
            lines.extend(f"  {column['name']} {column['type']}: {column['description']}" for column in table["columns"])
        return "\n".join(lines)

    def examples(self, now_ms: int) -> list[dict[str, str]]:
        # A fixed vocabulary: the examples name their symbols themselves, and
        # the prompt must not depend on what the database holds today.
        semantic = SemanticTranslator(Vocabulary(symbols=("BTC-USD", "ETH-USD")))
        messages: list[dict[str, str]] = []
        for question in EXAMPLES:
            try:
                example = semantic.translate(question, history=[], context=ChatContext(), now_ms=now_ms)
            except Exception:  # examples are a help, never a reason to fail
                log.debug("no example for %r", question, exc_info=True)
                continue
            if example.kind != "sql":
                continue
            answer = {"sql": example.sql, "params": example.params, "description": example.text}
            messages.append({"role": "user", "content": question})
            messages.append({"role": "assistant", "content": json.dumps(answer)})
        return messages

    def messages(self, question: str, history: list[Turn], context: ChatContext, now_ms: int) -> list[dict[str, str]]:
        system = f"{RULES}\n\nTables:\n{self.schema_text()}\n\nCurrent time: {now_ms} (epoch ms, UTC)."
        result = [{"role": "system", "content": system}, *self.examples(now_ms)]
        for turn in history:
            if turn.question:
                result.append({"role": "user", "content": turn.question})
                if turn.sql:
                    result.append({"role": "assistant", "content": json.dumps({"sql": turn.sql})})
        hints = {
            k: v for k, v in (("symbol", context.symbol), ("chain", context.chain), ("address", context.address)) if v
        }
        content = question if not hints else f"{question}\n(context: {json.dumps(hints)})"
        result.append({"role": "user", "content": content})
        return result

    # ------------------------------------------------------------ wire

    def client(self) -> OpenAI:
        """A client for one turn. No retries: a failed turn is refunded and
        the user asks again, so a retry would only double the wait."""
        return OpenAI(
            base_url=self.base_url,
            # The client refuses to start without a key; a server that needs
            # none (vLLM, llama.cpp, Ollama) gets none, see ``events``.
            api_key=self.api_key or NO_API_KEY,
            timeout=self.timeout,
            max_retries=0,
        )

    def events(self, messages: list[dict[str, str]]) -> Generator[ChatCompletionChunk]:
        """The streamed chunks, with every library and transport failure
        turned into ``TranslatorUnavailable``."""
        with self.client() as client:
            try:
                chunks = client.chat.completions.create(
                    model=self.model,
                    messages=cast("list[ChatCompletionMessageParam]", messages),
                    stream=True,
                    stream_options={"include_usage": True},
                    temperature=0,
                    extra_headers=None if self.api_key else {"Authorization": omit},
                )
            except APIStatusError as exc:
                raise TranslatorUnavailable(f"the model server answered HTTP {exc.status_code}") from None
            except APITimeoutError:
                raise TranslatorUnavailable(f"the model server did not answer within {self.timeout:g}s") from None
            except APIConnectionError as exc:
                raise TranslatorUnavailable(f"the model server could not be reached: {_cause(exc)}") from None
            with chunks:
                try:
                    yield from chunks
                except APIConnectionError as exc:  # a reset or a read timeout mid-stream
                    raise TranslatorUnavailable(f"the model server broke off before [DONE]: {_cause(exc)}") from None
                except APIError as exc:  # an error event inside the stream
                    raise TranslatorUnavailable(f"the model server reported an error: {exc.message}") from None
                except ValueError:  # an event whose data is not JSON
                    raise TranslatorUnavailable("the model server sent a malformed event") from None

    def stream(self, messages: list[dict[str, str]], on_delta: ProgressCallback | None = None) -> StreamResult:
        parts: list[str] = []
        usage: dict[str, Any] | None = None
        finish: str | None = None
        size = 0
        # closing: an answer cut short here (too long, a failing callback)
        # closes the stream and its client at once.
        with closing(self.events(messages)) as chunks:
            for chunk in chunks:
                if chunk.usage is not None:
                    usage = chunk.usage.model_dump(exclude_unset=True)
                for choice in chunk.choices or []:
                    delta = (choice.delta.content if choice.delta else None) or ""
                    if delta:
                        parts.append(delta)
                        size += len(delta)
                        if on_delta is not None:
                            on_delta(delta)
                    finish = choice.finish_reason or finish
                if size > MAX_RESPONSE_CHARS:
                    raise TranslatorUnavailable("the model's answer is too long")
        if finish is None:
            # The library ends the iteration quietly both at ``[DONE]`` and
            # when the connection closes early; an answer is complete once a
            # choice carries its finish_reason (sent right before the usage
            # report and ``[DONE]``).
            raise TranslatorUnavailable("the model server closed the stream before [DONE]")
        return StreamResult("".join(parts), usage, finish)

    # ------------------------------------------------------------ translate

    def translate(
        self,
        question: str,
        *,
        history: list[Turn],
        context: ChatContext,
        now_ms: int,
        application_id: str = "",
        on_delta: ProgressCallback | None = None,
    ) -> Translation:
        refused = refusals.refusal(question, application_id)
        if refused is not None:  # the model is not asked: no SQL, no tokens
            return Translation("refuse", refused.text, code=refused.code)
        result = self.stream(self.messages(question, history, context, now_ms), on_delta)
        tokens = 0
        if result.usage:
            total = result.usage.get("total_tokens")
            if not isinstance(total, int):
                total = int(result.usage.get("prompt_tokens") or 0) + int(result.usage.get("completion_tokens") or 0)
            tokens = max(total, 0)
        answer = _json_object(result.content)
        if answer is None:
            raise TranslatorUnavailable("the model did not answer with a JSON object")
        if "refuse" in answer:
            refused = refusals.by_code(str(answer["refuse"]))
            if refused is None:
                raise TranslatorUnavailable("the model refused with a code that is not documented")
            return Translation("refuse", refused.text, code=refused.code, tokens=tokens)
        if isinstance(answer.get("clarify"), str) and answer["clarify"].strip():
            return Translation("clarify", answer["clarify"].strip(), tokens=tokens)
        sql = answer.get("sql")
        params = answer.get("params") or {}
        if not isinstance(sql, str) or not sql.strip() or not isinstance(params, dict):
            raise TranslatorUnavailable("the model's answer has no usable sql")
        refusal = self.validate(sql, params, application_id)
        if refusal:
            return Translation(
                "clarify",
                f"The statement the model wrote was refused by the query engine ({refusal}); nothing was run. "
                "Could you rephrase the question?",
                sql="",
                tokens=tokens,
                slots={"refused_sql": sql[:2000]},
            )
        description = " ".join(str(answer.get("description") or "").split())[:300].rstrip(".")
        computed = restate(sql, params)
        description = f"{description} ({computed})" if description else computed[:1].upper() + computed[1:]
        return Translation(
            "sql",
            description,
            sql=sql,
            params=params,
            tokens=tokens,
            slots={"table": None, "text": question[:500]},
        )

    @staticmethod
    def validate(sql: str, params: Any, application_id: str) -> str:
        """'' when the query engine's compiler accepts the statement, else why not."""
        try:
            compile_query(
                sql,
                params or None,
                catalog,
                Caller(0, application_id or "-"),
                dialect="postgres",
                max_rows=1,
                default_limit=1,
            )
        except QueryError as exc:
            return f"{exc.code}: {exc.message}"
        return ""
