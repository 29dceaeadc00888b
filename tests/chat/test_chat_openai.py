"""The openai translator against a real local HTTP server that speaks the
OpenAI chat-completions streaming wire format (server-sent events: chunks,
a usage report, ``[DONE]``), including servers that break mid-stream,
answer errors or write statements the validator refuses; refusals with the
documented codes (before the model is asked, or the model's own) and the
restatement of what was computed before the numbers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from chat import refusals, services
from chat.eval import fixtures
from chat.translators import ChatContext, TranslatorUnavailable
from chat.translators.openai import OpenAITranslator
from tests.chat.test_chat_ws import assert_well_formed, turn
from tests.wsclient import connected, unique

VOLUME_SQL = "SELECT venue, sum(size) AS volume FROM trades WHERE symbol = :symbol GROUP BY venue ORDER BY venue"
ANSWER = {"sql": VOLUME_SQL, "params": {"symbol": "ETH-USD"}, "description": "total ETH-USD volume"}
USAGE = {"prompt_tokens": 812, "completion_tokens": 41, "total_tokens": 853}


class FakeModelServer:
    """Answers POST /v1/chat/completions with a scripted stream."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.answer: dict[str, Any] = ANSWER
        self.requests: list[dict[str, Any]] = []
        # The received headers as the server parsed them: names are
        # case-insensitive, as in HTTP (clients send "authorization" or
        # "Authorization").
        self.headers: list[Message] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                outer.requests.append(json.loads(self.rfile.read(length)))
                outer.headers.append(self.headers)
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                if outer.mode == "http_error":
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"error": {"message": "overloaded"}}')
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                text = json.dumps(outer.answer)
                pieces = [text[i : i + 7] for i in range(0, len(text), 7)]
                self.event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
                for index, piece in enumerate(pieces):
                    if outer.mode == "error_event" and index == 1:
                        self.event({"error": {"message": "the model is overloaded"}})
                        return
                    if outer.mode == "break" and index == len(pieces) // 2:
                        self.wfile.flush()
                        self.connection.shutdown(2)  # the server dies mid-answer
                        return
                    self.event({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
                self.event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                self.event({"choices": [], "usage": USAGE})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def event(self, payload: dict[str, Any]) -> None:
                body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "fake", **payload}
                self.wfile.write(b": keep-alive\n\ndata: " + json.dumps(body).encode() + b"\n\n")
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def translator(self) -> OpenAITranslator:
        return OpenAITranslator(self.base_url, "fake-model", api_key="sk-test", timeout=5)


@pytest.fixture
def model_server() -> Iterator[FakeModelServer]:
    fake = FakeModelServer()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def ask(translator: OpenAITranslator, question: str = "total volume of ETH-USD") -> Any:
    return translator.translate(question, history=[], context=ChatContext(symbol="ETH-USD"), now_ms=1_700_000_000_000)


def test_the_streamed_answer_becomes_validated_sql_with_the_servers_token_usage(model_server):
    deltas: list[str] = []
    translation = model_server.translator().translate(
        "total volume of ETH-USD", history=[], context=ChatContext(), now_ms=1, on_delta=deltas.append
    )
    assert translation.kind == "sql" and translation.sql == VOLUME_SQL
    assert translation.params == {"symbol": "ETH-USD"} and translation.tokens == 853
    assert "".join(deltas) == json.dumps(ANSWER) and len(deltas) > 3
    request = model_server.requests[0]
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}
    assert request["model"] == "fake-model"
    assert model_server.headers[0]["Authorization"] == "Bearer sk-test"
    system = request["messages"][0]["content"]
    assert "table transfers (public)" in system and "table credit_entries (private)" in system
    assert any(m["role"] == "assistant" and "SELECT" in m["content"] for m in request["messages"][1:-1])


def test_a_server_that_breaks_mid_stream_is_a_translator_failure(model_server):
    model_server.mode = "break"
    with pytest.raises(TranslatorUnavailable, match="before \\[DONE\\]"):
        ask(model_server.translator())


def test_an_http_error_is_a_translator_failure(model_server):
    model_server.mode = "http_error"
    with pytest.raises(TranslatorUnavailable, match="HTTP 500"):
        ask(model_server.translator())


def test_an_error_event_in_the_stream_is_a_translator_failure(model_server):
    model_server.mode = "error_event"
    with pytest.raises(TranslatorUnavailable, match="reported an error: the model is overloaded"):
        ask(model_server.translator())


def test_a_server_that_cannot_be_reached_is_a_translator_failure(model_server):
    url = model_server.base_url
    model_server.server.shutdown()
    model_server.server.server_close()
    with pytest.raises(TranslatorUnavailable, match="could not be reached"):
        ask(OpenAITranslator(url, "fake-model", timeout=5))


def test_without_an_api_key_no_authorization_header_is_sent(model_server):
    translation = ask(OpenAITranslator(model_server.base_url, "fake-model", timeout=5))
    assert translation.kind == "sql" and translation.tokens == 853
    assert model_server.headers[0]["Authorization"] is None


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM credit_entries",
        "SELECT * FROM auth_user",
        "SELECT * FROM credits_ledgerentry",
        "SELECT 1; DROP TABLE trades",
    ],
)
def test_statements_the_validator_refuses_are_never_run(model_server, sql):
    model_server.answer = {"sql": sql, "params": {}}
    translation = ask(model_server.translator())
    assert translation.kind == "clarify" and not translation.sql and "refused" in translation.text
    assert translation.tokens == 853


def test_a_clarifying_answer_is_passed_on(model_server):
    model_server.answer = {"clarify": "Which venue do you mean?"}
    translation = ask(model_server.translator())
    assert translation.kind == "clarify" and translation.text == "Which venue do you mean?"


RESTATED = "computed as venue, SUM(size) from trades where symbol = 'ETH-USD', per venue, ordered by venue"


def test_the_answer_restates_the_statement_with_its_bound_values(model_server):
    translation = ask(model_server.translator())
    assert translation.text == f"total ETH-USD volume ({RESTATED})"
    # A description that says something else than the SQL shows beside it.
    model_server.answer = {**ANSWER, "description": "BTC-USD volume yesterday"}
    assert ask(model_server.translator()).text == f"BTC-USD volume yesterday ({RESTATED})"
    model_server.answer = {"sql": VOLUME_SQL, "params": {"symbol": "ETH-USD"}}
    assert ask(model_server.translator()).text == "C" + RESTATED[1:]


@pytest.mark.parametrize(
    ("question", "code"),
    [
        ("give me 100 credits", refusals.CHANGE),
        ("DELETE FROM trades", refusals.CHANGE),
        ("how many credits does alice have", refusals.OTHERS),
        ("write me a poem about blockchains", refusals.OUTSIDE),
    ],
)
def test_refused_questions_never_reach_the_model(model_server, question, code):
    translation = ask(model_server.translator(), question)
    assert (translation.kind, translation.code, translation.sql, translation.tokens) == ("refuse", code, "", 0)
    assert code in translation.text and model_server.requests == []


def test_the_models_own_refusal_carries_a_documented_code(model_server):
    model_server.answer = {"refuse": "REFUSED_OUTSIDE"}
    translation = ask(model_server.translator(), "how tall is the eiffel tower")
    assert (translation.kind, translation.code, translation.sql) == ("refuse", refusals.OUTSIDE, "")
    assert translation.text == refusals.by_code(refusals.OUTSIDE).text and translation.tokens == 853
    assert "REFUSED_OTHERS" in model_server.requests[0]["messages"][0]["content"]
    model_server.answer = {"refuse": "NOT_A_CODE"}
    with pytest.raises(TranslatorUnavailable, match="not documented"):
        ask(model_server.translator(), "how tall is the eiffel tower")


@pytest.mark.django_db(transaction=True)
def test_the_turn_runs_the_models_sql_as_the_caller_and_reports_the_servers_tokens(model_server):
    fixture = fixtures.load(user_id="model-user")
    result = services.answer_question(
        user_pk=fixture.user_pk,
        application_id=fixture.application_id,
        conversation_id="llm",
        message="total volume of ETH-USD",
        translator=model_server.translator(),
    )
    assert result.tokens == 853 and result.sql == VOLUME_SQL
    assert result.content.startswith(f"Total ETH-USD volume ({RESTATED}): 2 rows.")
    assert result.content.index(RESTATED) < result.content.index("| binance | 35 |")
    assert [[venue, float(volume)] for venue, volume in result.rows] == [["binance", 35.0], ["coinbase", 38.0]]
    assert "| binance | 35 |" in result.content and "| coinbase | 38 |" in result.content
    model_server.mode = "break"
    with pytest.raises(services.ChatError) as failed:
        services.answer_question(
            user_pk=fixture.user_pk,
            application_id=fixture.application_id,
            conversation_id="llm",
            message="and BTC-USD?",
            translator=model_server.translator(),
        )
    assert failed.value.code == "INTERNAL"


@pytest.mark.django_db(transaction=True)
async def test_over_the_websocket_with_the_openai_translator(model_server, live_server_url, settings):
    from channels.db import database_sync_to_async

    me = unique("llm")
    await database_sync_to_async(fixtures.load)(user_id=me)
    settings.LEDGERCORE_CHAT_TRANSLATOR = "openai"
    settings.LEDGERCORE_CHAT_OPENAI_BASE_URL = model_server.base_url
    settings.LEDGERCORE_CHAT_OPENAI_MODEL = "fake-model"
    async with await connected(live_server_url, me) as client:
        answer = assert_well_formed(
            await turn(client, "q", {"message": "total ETH-USD volume", "conversationId": "m"}), "m"
        )
        assert answer["tokens"] == 853 and answer["sql"] == VOLUME_SQL and "| coinbase | 38 |" in answer["content"]
        model_server.mode = "break"
        frames = await turn(client, "q2", {"message": "and BTC?", "conversationId": "m"})
    assert [f["event"] for f in frames] == ["chat_typing", "chat_stop_typing", "chat_error"]
    assert frames[-1]["data"]["code"] == "INTERNAL"
