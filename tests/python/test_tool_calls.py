"""Tool calls through every surface with the official SDKs, unchanged, against the demo.

The demo's simulated upstream follows one fixed rule (docs/api.md): offered tools and a user turn,
it calls the first tool with {"query": <user text>}; given tool results, it answers with text that
quotes them. So each SDK must parse a tool call the hub produced (unary and streamed), send the
result back in its own format, and get the final answer."""

import json
import os

from anthropic import Anthropic
from openai import OpenAI

from test_bedrock_boto3 import hub_client

BASE_URL = os.environ["SWITCHYARD_BASE_URL"]
API_KEY = os.environ["SWITCHYARD_API_KEY"]

WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
    },
}


def openai_client():
    return OpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0, timeout=30)


def test_openai_tool_call_round_trip():
    client = openai_client()
    messages = [{"role": "user", "content": "weather in Lisbon"}]
    first = client.chat.completions.create(
        model="demo", messages=messages, tools=[{"type": "function", "function": WEATHER}]
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"query": "weather in Lisbon"}

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"})
    second = client.chat.completions.create(
        model="demo", messages=messages, tools=[{"type": "function", "function": WEATHER}]
    )
    assert second.choices[0].finish_reason == "stop"
    assert "sunny, 21 C" in second.choices[0].message.content


def test_openai_streamed_tool_call_deltas_assemble():
    client = openai_client()
    stream = client.chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "weather in Porto"}],
        tools=[{"type": "function", "function": WEATHER}],
        stream=True,
    )
    calls = {}
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        for tc in delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
            if tc.id:
                slot["id"] = tc.id
            if tc.function and tc.function.name:
                slot["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                slot["arguments"] += tc.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert calls[0]["id"] and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"query": "weather in Porto"}


def test_anthropic_tool_use_round_trip_and_stream():
    client = Anthropic(base_url=BASE_URL.removesuffix("/v1"), api_key=API_KEY, max_retries=0)
    tools = [
        {
            "name": WEATHER["name"],
            "description": WEATHER["description"],
            "input_schema": WEATHER["parameters"],
        }
    ]
    messages = [{"role": "user", "content": "weather in Faro"}]
    first = client.messages.create(model="demo", max_tokens=64, tools=tools, messages=messages)
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "get_weather"
    assert use.input == {"query": "weather in Faro"}

    messages.append({"role": "assistant", "content": [b.model_dump() for b in first.content]})
    messages.append(
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "windy, 17 C"}],
        }
    )
    second = client.messages.create(model="demo", max_tokens=64, tools=tools, messages=messages)
    assert second.stop_reason == "end_turn"
    assert "windy, 17 C" in second.content[0].text

    # Streamed: input_json_delta events assemble into the same input.
    with client.messages.stream(
        model="demo",
        max_tokens=64,
        tools=tools,
        messages=[{"role": "user", "content": "weather in Braga"}],
    ) as stream:
        final = stream.get_final_message()
    use = next(b for b in final.content if b.type == "tool_use")
    assert final.stop_reason == "tool_use"
    assert use.input == {"query": "weather in Braga"}


def test_boto3_converse_tool_use_round_trip_and_stream():
    client = hub_client()
    tool_config = {
        "tools": [
            {
                "toolSpec": {
                    "name": WEATHER["name"],
                    "description": WEATHER["description"],
                    "inputSchema": {"json": WEATHER["parameters"]},
                }
            }
        ]
    }
    messages = [{"role": "user", "content": [{"text": "weather in Coimbra"}]}]
    first = client.converse(modelId="demo", messages=messages, toolConfig=tool_config)
    assert first["stopReason"] == "tool_use"
    use = next(c["toolUse"] for c in first["output"]["message"]["content"] if "toolUse" in c)
    assert use["name"] == "get_weather"
    assert use["input"] == {"query": "weather in Coimbra"}

    messages.append(first["output"]["message"])
    messages.append(
        {
            "role": "user",
            "content": [
                {
                    "toolResult": {
                        "toolUseId": use["toolUseId"],
                        "content": [{"text": "rain, 14 C"}],
                    }
                }
            ],
        }
    )
    second = client.converse(modelId="demo", messages=messages, toolConfig=tool_config)
    assert second["stopReason"] == "end_turn"
    assert "rain, 14 C" in second["output"]["message"]["content"][0]["text"]

    # Streamed: contentBlockStart carries the tool, contentBlockDelta its input in pieces.
    resp = client.converse_stream(
        modelId="demo",
        messages=[{"role": "user", "content": [{"text": "weather in Evora"}]}],
        toolConfig=tool_config,
    )
    name, pieces, stop = None, "", None
    for event in resp["stream"]:
        if "contentBlockStart" in event:
            name = event["contentBlockStart"]["start"]["toolUse"]["name"]
        if "contentBlockDelta" in event and "toolUse" in event["contentBlockDelta"]["delta"]:
            pieces += event["contentBlockDelta"]["delta"]["toolUse"]["input"]
        if "messageStop" in event:
            stop = event["messageStop"]["stopReason"]
    assert name == "get_weather"
    assert json.loads(pieces) == {"query": "weather in Evora"}
    assert stop == "tool_use"
