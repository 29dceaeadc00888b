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

The statement is compiled by the query engine's compiler before anything
runs; one it refuses becomes an honest answer that nothing was run. A
server that cannot be reached, answers an error, or breaks off before
``[DONE]`` raises ``TranslatorUnavailable`` (the turn fails with INTERNAL
and is refunded).

Plain ``urllib`` on the worker thread the turn already runs on: the stream
is read line by line, so nothing blocks the event loop.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from chat.translators.base import ChatContext, ProgressCallback, Translation, TranslatorUnavailable, Turn
from chat.translators.builtin import BuiltinTranslator
from chat.vocabulary import Vocabulary
from queryengine.interface import Caller, QueryError, catalog, compile_query

log = logging.getLogger(__name__)

MAX_RESPONSE_CHARS = 50_000
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
Answer with one JSON object and nothing else, either
{"sql": "...", "params": {...}, "description": "what the rows are, in a few words"}
or {"clarify": "your question back"}."""


@dataclass
class StreamResult:
    content: str
    usage: dict[str, Any] | None
    finish_reason: str | None


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
        builtin = BuiltinTranslator(Vocabulary(symbols=("BTC-USD", "ETH-USD")))
        messages: list[dict[str, str]] = []
        for question in EXAMPLES:
            try:
                example = builtin.translate(question, history=[], context=ChatContext(), now_ms=now_ms)
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

    def stream(self, messages: list[dict[str, str]], on_delta: ProgressCallback | None = None) -> StreamResult:
        body = json.dumps(
            {
                "model": self.model,
                "messages": messages,
                "stream": True,
                "stream_options": {"include_usage": True},
                "temperature": 0,
            }
        ).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(  # noqa: S310 - the operator configures the URL
            f"{self.base_url}/chat/completions", data=body, headers=headers, method="POST"
        )
        parts: list[str] = []
        usage: dict[str, Any] | None = None
        finish: str | None = None
        size = 0
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                while True:
                    raw = response.readline()
                    if not raw:
                        raise TranslatorUnavailable("the model server closed the stream before [DONE]")
                    line = raw.decode("utf-8", "replace").strip()
                    if not line.startswith("data:"):
                        continue  # comments, event names, keep-alives, blank separators
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        raise TranslatorUnavailable("the model server sent a malformed event") from None
                    if isinstance(chunk, dict) and chunk.get("error"):
                        raise TranslatorUnavailable(f"the model server reported an error: {chunk['error']}")
                    if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
                        usage = chunk["usage"]
                    for choice in (chunk.get("choices") or []) if isinstance(chunk, dict) else []:
                        delta = (choice.get("delta") or {}).get("content") or ""
                        if delta:
                            parts.append(delta)
                            size += len(delta)
                            if on_delta is not None:
                                on_delta(delta)
                        finish = choice.get("finish_reason") or finish
                    if size > MAX_RESPONSE_CHARS:
                        raise TranslatorUnavailable("the model's answer is too long")
        except urllib.error.HTTPError as exc:
            raise TranslatorUnavailable(f"the model server answered HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            if isinstance(exc, TranslatorUnavailable):
                raise
            raise TranslatorUnavailable(f"the model server could not be reached: {exc}") from None
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
        description = str(answer.get("description") or "the rows of the query")[:300]
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
