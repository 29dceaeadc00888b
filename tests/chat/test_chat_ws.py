"""The chat events over a real WebSocket: typing, streamed deltas, exactly one
final message, stop-typing, the response with its SQL; follow-ups, errors,
the conversation room, charging and its refund."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async

from accounts import services as accounts
from chat.eval import fixtures
from chat.models import Conversation, Message
from credits import services as credits
from devtools.servers import free_port
from tests.factories import funded
from tests.wsclient import Client, connected, unique

pytestmark = pytest.mark.django_db(transaction=True)

DONE = {"chat_response", "chat_error", "validation_error"}


@database_sync_to_async
def load_fixture(user_id: str) -> fixtures.Fixture:
    return fixtures.load(user_id=user_id)


@database_sync_to_async
def balance(user_id: str) -> int:
    user = accounts.get_or_create_user(user_id)
    assert user.default_application_id is not None
    return credits.get_balance(user.pk, user.default_application_id).balance


async def turn(client: Client, request_id: str, data: dict[str, Any], timeout: float = 20.0) -> list[dict[str, Any]]:
    """The frames of one chat request, up to its response or error."""
    await client.send("chat", data, id=request_id)
    frames: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = max(deadline - asyncio.get_running_loop().time(), 0.01)
        frame = json.loads(await asyncio.wait_for(client.ws.recv(), remaining))
        if frame.get("id") != request_id:
            client.backlog.append(frame)  # pushed events (credits, rooms) stay for expect()
            continue
        frames.append(frame)
        if frame["event"] in DONE:
            return frames


def assert_well_formed(frames: list[dict[str, Any]], conversation_id: str) -> dict[str, Any]:
    events = [frame["event"] for frame in frames]
    assert events[0] == "chat_typing" and events[-1] == "chat_response", events
    assert events.count("chat_typing") == events.count("chat_stop_typing") == 1
    messages = [frame["data"] for frame in frames if frame["event"] == "chat_message"]
    finals = [m for m in messages if m["isFinal"]]
    assert len(finals) == 1 and messages[-1] is finals[0], "exactly one isFinal: true, and it is the last"
    assert len(messages) >= 2, "at least one delta before the final message"
    assert events[-2] == "chat_stop_typing" and events[-3] == "chat_message"
    response = frames[-1]["data"]
    assert {m["messageId"] for m in messages} == {response["messageId"]}
    assert all(f["data"]["conversationId"] == conversation_id for f in frames)
    assert all(m["role"] == "assistant" for m in messages)
    assert "".join(m["delta"] for m in messages) == finals[0]["content"]
    assert isinstance(response["tokens"], int) and response["tokens"] > 0
    return {"content": finals[0]["content"], **response}


async def test_a_question_streams_typing_deltas_one_final_message_stop_typing_and_the_response(live_server_url):
    me = unique("analyst")
    await load_fixture(me)
    async with await connected(live_server_url, me) as client:
        frames = await turn(client, "q1", {"message": "total traded volume of ETH-USD", "conversationId": "conv-1"})
    answer = assert_well_formed(frames, "conv-1")
    assert "73" in answer["content"]
    assert answer["sql"].startswith("SELECT SUM(size) AS volume FROM trades WHERE symbol = :symbol")
    assert answer["params"] == {"symbol": "ETH-USD"}
    assert answer["queryId"].startswith("q_")

    stored = await database_sync_to_async(lambda: list(Message.objects.filter(conversation_id="conv-1")))()
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[1].id == answer["messageId"] and stored[1].sql == answer["sql"] and stored[1].tokens > 0
    assert stored[1].content == answer["content"]


async def test_follow_up_turns_and_context_fill_missing_slots(live_server_url):
    me = unique("analyst")
    fixture = await load_fixture(me)
    async with await connected(live_server_url, me) as client:
        # Without a conversationId the server picks one; the follow-up names it.
        frames = await turn(client, "q1", {"message": "total traded volume of ETH-USD"})
        chosen = frames[0]["data"]["conversationId"]
        assert chosen.startswith("c_")
        assert_well_formed(frames, chosen)
        second = assert_well_formed(
            await turn(client, "q2", {"message": "and for BTC-USD?", "conversationId": chosen}), chosen
        )
        third = assert_well_formed(
            await turn(
                client,
                "q3",
                {
                    "message": "how many transfers did it send?",
                    "conversationId": chosen,
                    "context": {"chain": "ethereum", "address": fixture.addresses["E1"]},
                },
            ),
            chosen,
        )
    assert second["params"] == {"symbol": "BTC-USD"} and " 10" in second["content"]
    assert third["params"]["from_address"] == fixture.addresses["E1"] and " 3." in third["content"]


async def test_someone_elses_conversation_is_unauthorized_without_typing(live_server_url):
    owner, intruder = unique("owner"), unique("intruder")
    async with await connected(live_server_url, owner) as client:
        await turn(client, "mine", {"message": "hello", "conversationId": "private-talk"})
    async with await connected(live_server_url, intruder) as client:
        frames = await turn(client, "theirs", {"message": "hello", "conversationId": "private-talk"})
    assert [f["event"] for f in frames] == ["chat_error"]
    assert frames[0]["data"]["code"] == "UNAUTHORIZED"
    assert frames[0]["data"]["conversationId"] == "private-talk"
    count = await database_sync_to_async(Message.objects.filter(conversation_id="private-talk").count)()
    assert count == 2  # the owner's turn only


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"message": ""},
        {"message": "hi", "conversationId": "has space"},
        {"message": "hi", "conversationId": "x" * 65},
        {"message": "hi", "unexpected": 1},
        {"message": "hi", "context": {"symbol": "BTC-USD", "colour": "red"}},
        {"message": "x" * 4001},
    ],
)
async def test_bad_payloads_get_validation_error_and_the_connection_stays(live_server_url, data):
    me = unique("analyst")
    async with await connected(live_server_url, me) as client:
        frames = await turn(client, "bad", data)
        assert [f["event"] for f in frames] == ["validation_error"]
        assert frames[0]["data"]["event"] == "chat"
        pong = await client.request("ping", id="p")
        assert pong["event"] == "pong"


async def test_an_unclear_question_gets_a_clarifying_answer_without_sql(live_server_url):
    me = unique("analyst")
    async with await connected(live_server_url, me) as client:
        answer = assert_well_formed(await turn(client, "q", {"message": "hello", "conversationId": "hi"}), "hi")
    assert "sql" not in answer and "?" in answer["content"]


async def test_the_conversation_room_carries_the_stream_to_the_owners_other_tabs_only(live_server_url):
    me, other = unique("owner"), unique("other")
    await load_fixture(me)
    async with await connected(live_server_url, me) as asker:
        await turn(asker, "first", {"message": "hello", "conversationId": "roomy"})
        async with await connected(live_server_url, me) as tab, await connected(live_server_url, other) as stranger:
            assert (await tab.request("subscribe", {"room": "chat:roomy"}))["event"] == "subscribed"
            refused = await stranger.request("subscribe", {"room": "chat:roomy"})
            assert refused["event"] == "error" and refused["data"]["code"] == "UNAUTHORIZED"
            missing = await stranger.request("subscribe", {"room": "chat:nobody-has-this"})
            assert missing["event"] == "error" and missing["data"]["code"] == "NOT_FOUND"
            frames = await turn(
                asker, "second", {"message": "total traded volume of ETH-USD", "conversationId": "roomy"}
            )
            response = await tab.expect("chat_response", timeout=10)
            assert "id" not in response and response["data"]["messageId"] == frames[-1]["data"]["messageId"]
            pushed = [f for f in tab.backlog if f["event"].startswith("chat_")]
            assert next(f["event"] for f in pushed) == "chat_typing"
            assert sum(1 for f in pushed if f["event"] == "chat_message" and f["data"]["isFinal"]) == 1


async def test_chat_is_charged_and_refunded_when_the_server_fails(live_server_url, settings):
    me = unique("payer")
    settings.LEDGERCORE_PRICES = {"chat": 3}
    user, _ = await database_sync_to_async(funded)(me, 10, reason="test")
    async with await connected(live_server_url, me) as client:
        assert_well_formed(await turn(client, "ok", {"message": "hello", "conversationId": "paid"}), "paid")
        assert await balance(me) == 7

        # A model server that is not there: the turn fails on our side.
        settings.LEDGERCORE_CHAT_TRANSLATOR = "openai"
        settings.LEDGERCORE_CHAT_OPENAI_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
        settings.LEDGERCORE_CHAT_OPENAI_TIMEOUT_SECONDS = 2
        frames = await turn(client, "broken", {"message": "total traded volume of ETH-USD", "conversationId": "paid"})
    events = [f["event"] for f in frames]
    assert events == ["chat_typing", "chat_stop_typing", "chat_error"], events
    assert frames[-1]["data"]["code"] == "INTERNAL" and frames[-1]["data"]["conversationId"] == "paid"
    for _ in range(50):
        if await balance(me) == 7:
            break
        await asyncio.sleep(0.1)
    assert await balance(me) == 7  # held, then released
    conversation = await database_sync_to_async(Conversation.objects.get)(pk="paid")
    assert conversation.owner_id == user.pk


async def test_chat_is_charged_by_tokens_up_to_the_price_held(live_server_url, settings):
    # 1 credit per 100 tokens, at most 50 credits held per question.
    settings.LEDGERCORE_PRICES = {"chat": 50, "chat_1k_tokens": 10}
    me = unique("metered")
    await load_fixture(me)
    before = await balance(me)
    async with await connected(live_server_url, me) as client:
        frames = await turn(client, "q1", {"message": "total traded volume of ETH-USD"})
        answer = assert_well_formed(frames, frames[0]["data"]["conversationId"])
        expected = min(50, -(-answer["tokens"] * 10 // 1000))
        await client.expect("credits_deducted", amount=expected, timeout=10)
    assert await balance(me) == before - expected
