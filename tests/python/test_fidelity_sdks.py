"""Issue 15 (fidelity) with the official SDKs, unchanged, against the demo (simulated upstream).

What structured-output and agent libraries send on every request must reach the model: the
openai SDK's `.parse()` (a pydantic model sent as `response_format` `json_schema`), Anthropic
`tool_choice` `any` / `tool` / `none`, and Converse `toolChoice`.

The simulated upstream plays along (docs/configuration.md): asked for a JSON schema it answers a
deterministic value that validates against it; `tool_choice` none / forced / named are honoured.
Left to itself (`auto`) it calls the *first* tool when the last message is the user's and answers
text after tool results, so each test below asks for something `auto` would not give: a named
*second* tool, a forced call after tool results, no call although tools are offered. A hub that
dropped the field would answer differently and the test would fail."""

import json
import os
from typing import List, Literal

import jsonschema
import pytest
from anthropic import Anthropic
from openai import OpenAI
from pydantic import BaseModel, Field

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
# pydantic-ai's name for the tool that carries a structured answer.
FINAL = {
    "name": "final_result",
    "description": "The final answer",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "temperature_c": {"type": "integer", "minimum": -90, "maximum": 60},
            "conditions": {"type": "string", "enum": ["sunny", "cloudy", "rain"]},
        },
        "required": ["city", "temperature_c", "conditions"],
        "additionalProperties": False,
    },
}


def openai_client():
    return OpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0, timeout=30)


def anthropic_client():
    return Anthropic(base_url=BASE_URL.removesuffix("/v1"), api_key=API_KEY, max_retries=0)


def openai_tools():
    return [{"type": "function", "function": t} for t in (WEATHER, FINAL)]


def anthropic_tools():
    return [
        {"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
        for t in (WEATHER, FINAL)
    ]


def converse_tools():
    return [
        {
            "toolSpec": {
                "name": t["name"],
                "description": t["description"],
                "inputSchema": {"json": t["parameters"]},
            }
        }
        for t in (WEATHER, FINAL)
    ]


# --- OpenAI chat: response_format -------------------------------------------------------------


class Place(BaseModel):
    name: str
    country_code: str = Field(min_length=2, max_length=2)


class Forecast(BaseModel):
    place: Place
    conditions: Literal["sunny", "cloudy", "rain"]
    temperature_c: int = Field(ge=-90, le=60)
    hourly: List[float]
    windy: bool


def parse(client, **kwargs):
    """`client.chat.completions.parse` (openai >= 1.92), else `client.beta.chat.completions.parse`."""
    completions = client.chat.completions
    if not hasattr(completions, "parse"):
        completions = client.beta.chat.completions
    return completions.parse(**kwargs)


def test_openai_parse_with_a_pydantic_model():
    completion = parse(
        openai_client(),
        model="demo",
        messages=[{"role": "user", "content": "Tomorrow's forecast for Lisbon"}],
        response_format=Forecast,
    )
    message = completion.choices[0].message
    assert message.refusal is None
    # The SDK parsed the content into the model (it raises on invalid JSON or a failed
    # validation): the schema reached the upstream and its answer obeyed it.
    assert isinstance(message.parsed, Forecast), message.content
    assert message.parsed.conditions in ("sunny", "cloudy", "rain")
    assert len(message.parsed.place.country_code) == 2
    # And the raw content is exactly that JSON (no prose around it).
    assert Forecast.model_validate_json(message.content) == message.parsed
    assert completion.choices[0].finish_reason == "stop"


def test_openai_json_schema_answer_validates_against_the_schema():
    schema = {
        "type": "object",
        "properties": {
            "answer": {"type": "string"},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "sources": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        },
        "required": ["answer", "confidence", "sources"],
        "additionalProperties": False,
    }
    completion = openai_client().chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "Sky colour?"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "a", "schema": schema, "strict": True},
        },
    )
    content = completion.choices[0].message.content
    jsonschema.validate(json.loads(content), schema)


def test_openai_json_object_answer_is_a_json_object():
    completion = openai_client().chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "Reply in JSON: the sky colour"}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(completion.choices[0].message.content), dict)


# --- OpenAI chat: tool_choice ------------------------------------------------------------------


def test_openai_named_tool_choice_calls_that_tool():
    completion = openai_client().chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "weather in Lisbon, as a final answer"}],
        tools=openai_tools(),
        tool_choice={"type": "function", "function": {"name": "final_result"}},
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [c.function.name for c in choice.message.tool_calls] == ["final_result"]
    jsonschema.validate(
        json.loads(choice.message.tool_calls[0].function.arguments), FINAL["parameters"]
    )


def test_openai_tool_choice_none_answers_text():
    completion = openai_client().chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "hi"}],
        tools=openai_tools(),
        tool_choice="none",
    )
    choice = completion.choices[0]
    assert not choice.message.tool_calls
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")


def test_openai_tool_choice_required_after_tool_results_still_calls():
    messages = [
        {"role": "user", "content": "weather in Porto"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"query": "Porto"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24 C"},
    ]
    completion = openai_client().chat.completions.create(
        model="demo", messages=messages, tools=openai_tools(), tool_choice="required"
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls
    assert choice.message.tool_calls[0].function.name in ("get_weather", "final_result")


# --- Anthropic Messages: tool_choice -----------------------------------------------------------


def test_anthropic_tool_choice_tool_calls_that_tool():
    message = anthropic_client().messages.create(
        model="demo",
        max_tokens=128,
        tools=anthropic_tools(),
        tool_choice={"type": "tool", "name": "final_result"},
        messages=[{"role": "user", "content": "weather in Faro, as a final answer"}],
    )
    assert message.stop_reason == "tool_use"
    uses = [b for b in message.content if b.type == "tool_use"]
    assert [u.name for u in uses] == ["final_result"]
    jsonschema.validate(uses[0].input, FINAL["parameters"])


def test_anthropic_tool_choice_tool_streamed():
    with anthropic_client().messages.stream(
        model="demo",
        max_tokens=128,
        tools=anthropic_tools(),
        tool_choice={"type": "tool", "name": "final_result"},
        messages=[{"role": "user", "content": "weather in Braga, as a final answer"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [u.name for u in uses] == ["final_result"]
    jsonschema.validate(uses[0].input, FINAL["parameters"])


@pytest.mark.parametrize("after_tool_result", [False, True])
def test_anthropic_tool_choice_any_calls_a_tool(after_tool_result):
    messages = [{"role": "user", "content": "weather in Faro"}]
    if after_tool_result:
        # Left to itself the model answers text here; `any` must force a call.
        messages += [
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"query": "Faro"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "windy, 17 C"}
                ],
            },
        ]
    message = anthropic_client().messages.create(
        model="demo",
        max_tokens=128,
        tools=anthropic_tools(),
        tool_choice={"type": "any"},
        messages=messages,
    )
    assert message.stop_reason == "tool_use"
    uses = [b for b in message.content if b.type == "tool_use"]
    assert uses and uses[0].name in ("get_weather", "final_result")


def test_anthropic_tool_choice_none_answers_text():
    message = anthropic_client().messages.create(
        model="demo",
        max_tokens=64,
        tools=anthropic_tools(),
        tool_choice={"type": "none"},
        messages=[{"role": "user", "content": "hi"}],
    )
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert not [b for b in message.content if b.type == "tool_use"]
    assert message.content[0].type == "text" and message.content[0].text


# --- Bedrock Converse: toolChoice --------------------------------------------------------------


def test_boto3_converse_tool_choice_tool_calls_that_tool():
    resp = hub_client().converse(
        modelId="demo",
        messages=[{"role": "user", "content": [{"text": "weather in Coimbra, as a final answer"}]}],
        toolConfig={"tools": converse_tools(), "toolChoice": {"tool": {"name": "final_result"}}},
    )
    assert resp["stopReason"] == "tool_use"
    uses = [c["toolUse"] for c in resp["output"]["message"]["content"] if "toolUse" in c]
    assert [u["name"] for u in uses] == ["final_result"]
    jsonschema.validate(uses[0]["input"], FINAL["parameters"])


def test_boto3_converse_tool_choice_any_after_tool_results_calls_a_tool():
    messages = [
        {"role": "user", "content": [{"text": "weather in Evora"}]},
        {
            "role": "assistant",
            "content": [
                {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"query": "Evora"}}}
            ],
        },
        {
            "role": "user",
            "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "hot, 31 C"}]}}],
        },
    ]
    resp = hub_client().converse(
        modelId="demo",
        messages=messages,
        toolConfig={"tools": converse_tools(), "toolChoice": {"any": {}}},
    )
    assert resp["stopReason"] == "tool_use"
    uses = [c["toolUse"] for c in resp["output"]["message"]["content"] if "toolUse" in c]
    assert uses and uses[0]["name"] in ("get_weather", "final_result")
