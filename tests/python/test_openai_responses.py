"""The official `openai` SDK's Responses API (`client.responses.*`), unchanged, against the hub.

The demo's simulated upstream answers "[simulated] <model> in <region> heard: <user text>", calls
the first offered tool with {"query": <user text>} on a user turn, and quotes tool results when
given them (docs/api.md), so every assertion below checks what went through the hub."""

import json
import os

import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

BASE_URL = os.environ["SWITCHYARD_BASE_URL"]
API_KEY = os.environ["SWITCHYARD_API_KEY"]

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
        "additionalProperties": False,
    },
    "strict": True,
}


@pytest.fixture
def client():
    return OpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0, timeout=30)


def test_create_text(client):
    raw = client.responses.with_raw_response.create(
        model="demo", input="Hello from the Responses API", instructions="be brief"
    )
    assert raw.headers["x-switchyard-provider"] == "simulated"
    resp = raw.parse()
    assert resp.object == "response"
    assert resp.id.startswith("resp_")
    assert resp.status == "completed"
    assert resp.instructions == "be brief"
    assert "heard: Hello from the Responses API" in resp.output_text
    message = resp.output[0]
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "output_text"
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert resp.usage.output_tokens > 0


def test_max_output_tokens_makes_it_incomplete(client):
    resp = client.responses.create(
        model="demo", input="one two three four five six seven", max_output_tokens=16
    )
    # The simulated answer is 13 words: within 16 tokens it completes.
    assert resp.status == "completed"
    short = client.responses.create(
        model="demo",
        input=[{"role": "user", "content": "one two three four five six seven"}],
        max_output_tokens=3,
    )
    assert short.status == "incomplete"
    assert short.incomplete_details.reason == "max_output_tokens"
    assert short.usage.output_tokens == 3


def test_stream_helper_events_and_final_response(client):
    deltas, types, seqs = [], [], []
    with client.responses.stream(model="demo", input="stream these words please") as stream:
        for event in stream:
            types.append(event.type)
            seqs.append(event.sequence_number)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert types[0] == "response.created"
    assert types[1] == "response.in_progress"
    assert types[-1] == "response.completed"
    assert seqs == list(range(len(seqs)))
    for t in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ):
        assert t in types
    assert "".join(deltas) == final.output_text
    assert "stream these words please" in final.output_text
    assert final.status == "completed"


def test_create_stream_true(client):
    stream = client.responses.create(model="demo", input="raw stream", stream=True)
    events = list(stream)
    assert events[0].type == "response.created"
    done = events[-1]
    assert done.type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == done.response.output_text
    assert done.response.usage.output_tokens > 0


def test_function_tool_round_trip(client):
    question = {"role": "user", "content": "weather in Lisbon"}
    first = client.responses.create(model="demo", input=[question], tools=[WEATHER])
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1, first.output
    call = calls[0]
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"query": "weather in Lisbon"}
    assert call.call_id
    # Stateless: the whole conversation sent back.
    second = client.responses.create(
        model="demo",
        tools=[WEATHER],
        input=[
            question,
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 24C"},
        ],
    )
    assert "got the tool result: sunny, 24C" in second.output_text
    # Stateful: only the tool output, continuing the stored response.
    third = client.responses.create(
        model="demo",
        tools=[WEATHER],
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rain"}],
    )
    assert "got the tool result: rain" in third.output_text
    assert third.previous_response_id == first.id


def test_streamed_function_call(client):
    with client.responses.stream(
        model="demo", input="weather in Oslo", tools=[WEATHER], tool_choice="auto"
    ) as stream:
        types = [e.type for e in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in types
    assert "response.function_call_arguments.done" in types
    call = [o for o in final.output if o.type == "function_call"][0]
    assert json.loads(call.arguments) == {"query": "weather in Oslo"}


def test_store_previous_response_retrieve_and_delete(client):
    first = client.responses.create(model="demo", input="my name is Ada")
    got = client.responses.retrieve(first.id)
    assert got.id == first.id and got.output_text == first.output_text
    second = client.responses.create(
        model="demo", input="what is my name?", previous_response_id=first.id
    )
    # The stored turn went upstream too: more input tokens than the question alone.
    alone = client.responses.create(model="demo", input="what is my name?", store=False)
    assert second.usage.input_tokens > alone.usage.input_tokens
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(alone.id)
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="demo", input="again", previous_response_id=first.id)
    assert e.value.body["param"] == "previous_response_id"
    assert e.value.body["code"] == "previous_response_not_found"


class CalendarEvent(BaseModel):
    name: str
    date: str
    participants: list[str]


def test_structured_output_parse(client):
    resp = client.responses.parse(
        model="demo",
        input="Alice and Bob are going to a science fair on Friday.",
        text_format=CalendarEvent,
    )
    assert resp.text.format.type == "json_schema"
    event = resp.output_parsed
    assert isinstance(event, CalendarEvent)
    assert isinstance(event.participants, list)


def test_hosted_tools_are_refused_by_name(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="demo", input="x", tools=[{"type": "web_search"}])
    assert e.value.body["param"] == "tools[0].type"
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="demo", input="x", background=True)
    assert e.value.body["param"] == "background"
