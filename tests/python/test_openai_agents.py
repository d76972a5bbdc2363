"""The OpenAI Agents SDK (`openai-agents`) against the hub, with its default model class
(`OpenAIResponsesModel`, the Responses API): a tool-using agent runs to its final answer.

The demo's simulated upstream calls the first tool with {"query": <user text>} on a user turn and
quotes the tool's result once it has it, so the final output proves the whole loop went through
the hub: tool call out, function result back, answer."""

import asyncio
import os

import pytest
from agents import (
    Agent,
    Runner,
    function_tool,
    set_default_openai_api,
    set_default_openai_client,
    set_tracing_disabled,
)
from agents.models.openai_responses import OpenAIResponsesModel
from openai import AsyncOpenAI

BASE_URL = os.environ["SWITCHYARD_BASE_URL"]
API_KEY = os.environ["SWITCHYARD_API_KEY"]

calls = []


@function_tool
def get_weather(query: str) -> str:
    """Current weather for a place."""
    calls.append(query)
    return f"sunny and 24C for: {query}"


@pytest.fixture(autouse=True)
def hub_client():
    # Traces would go to OpenAI's platform: off. The Responses API is the SDK's default.
    set_tracing_disabled(True)
    set_default_openai_api("responses")
    set_default_openai_client(
        AsyncOpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0, timeout=30),
        use_for_tracing=False,
    )
    calls.clear()


def agent():
    return Agent(
        name="Weather",
        instructions="Answer weather questions with the get_weather tool.",
        model="demo",
        tools=[get_weather],
    )


def test_agent_runs_a_tool_and_answers():
    a = agent()
    result = Runner.run_sync(a, "weather in Lisbon")
    assert calls == ["weather in Lisbon"]
    assert "got the tool result: sunny and 24C for: weather in Lisbon" in result.final_output
    # The default model class (what a model name resolves to) is the Responses one.
    from agents.models.openai_provider import OpenAIProvider

    assert isinstance(OpenAIProvider().get_model("demo"), OpenAIResponsesModel)
    # Two model calls: the tool call, then the answer quoting its result.
    assert len(result.raw_responses) == 2
    assert result.raw_responses[0].response_id.startswith("resp_")


def test_agent_streamed_run():
    async def run():
        result = Runner.run_streamed(agent(), "weather in Oslo")
        kinds = []
        async for event in result.stream_events():
            kinds.append(event.type)
        return result, kinds

    result, kinds = asyncio.run(run())
    assert calls == ["weather in Oslo"]
    assert "raw_response_event" in kinds
    assert "got the tool result: sunny and 24C for: weather in Oslo" in result.final_output
