"""The official SDKs read the hub's answers (issue 15): n choices, reasoning, logprobs, usage
details, thinking blocks with signatures, Bedrock reasoningContent and additional fields.

Run by crates/hub/tests/answers.rs (`official_sdks_parse_the_answers`) against in-process hubs
whose fake spokes answer fixed content (not collected by pytest: the demo's simulated upstream
does not answer this). Environment: OPENAI_HUB (a hub whose spoke answers three choices),
HUB (a hub whose spoke answers one choice with signed and redacted reasoning and a tool call),
HUB_KEY. Prints one "<sdk> ok" line per SDK; any mismatch raises.
"""

import os

import anthropic
import boto3
import openai
from botocore import UNSIGNED
from botocore.config import Config

KEY = os.environ["HUB_KEY"]
OPENAI_HUB = os.environ["OPENAI_HUB"]
HUB = os.environ["HUB"]
ASK = "Capital of France?"


def check_openai():
    client = openai.OpenAI(base_url=OPENAI_HUB + "/v1", api_key=KEY, max_retries=0)
    msgs = [{"role": "user", "content": ASK}]
    r = client.chat.completions.create(model="demo", messages=msgs, temperature=0)
    assert [c.index for c in r.choices] == [0, 1, 2], r
    first, second, third = r.choices
    assert first.message.content == "Paris.", first
    assert first.message.reasoning_content == "The capital of France.", first
    assert first.finish_reason == "stop"
    assert [t.token for t in first.logprobs.content] == ["Paris", "."]
    assert first.logprobs.content[0].top_logprobs[1].token == "Lyon"
    assert second.message.content == "It is Paris" and second.finish_reason == "length"
    assert third.finish_reason == "tool_calls"
    call = third.message.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == (
        "call_1",
        "lookup",
        '{"q":"France"}',
    )
    assert r.usage.prompt_tokens == 100 and r.usage.completion_tokens == 20
    assert r.usage.prompt_tokens_details.cached_tokens == 80
    assert r.usage.completion_tokens_details.reasoning_tokens == 7

    # Streamed: accumulate each choice by its index.
    content, reasoning, finish, args, usage = {}, {}, {}, {}, None
    stream = client.chat.completions.create(
        model="demo",
        messages=msgs,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            content[c.index] = content.get(c.index, "") + (c.delta.content or "")
            extra = getattr(c.delta, "reasoning_content", None) or ""
            reasoning[c.index] = reasoning.get(c.index, "") + extra
            for tc in c.delta.tool_calls or []:
                args[c.index] = args.get(c.index, "") + (tc.function.arguments or "")
            if c.finish_reason:
                finish[c.index] = c.finish_reason
            if c.logprobs is not None and c.logprobs.content:
                assert c.index == 0 and c.logprobs.content[0].token == "Paris"
    assert content == {0: "Paris.", 1: "It is Paris", 2: "Let me look."}, content
    assert reasoning[0] == "The capital of France.", reasoning
    assert finish == {0: "stop", 1: "length", 2: "tool_calls"}, finish
    assert args == {2: '{"q":"France"}'}, args
    assert usage.prompt_tokens_details.cached_tokens == 80
    assert usage.completion_tokens_details.reasoning_tokens == 7

    # The SDK's own stream helper assembles the same three choices (it raises on a choice cut
    # at the length limit, with the assembled completion attached).
    try:
        with client.chat.completions.stream(
            model="demo", messages=msgs, temperature=0
        ) as s:
            s.get_final_completion()
        raise AssertionError("choice 1 stopped at the length limit")
    except openai.LengthFinishReasonError as e:
        final = e.completion
    assert [c.finish_reason for c in final.choices] == ["stop", "length", "tool_calls"]
    assert [c.message.content for c in final.choices] == [
        "Paris.",
        "It is Paris",
        "Let me look.",
    ], final
    assert final.choices[2].message.tool_calls[0].function.arguments == '{"q":"France"}'
    print("openai ok")


def expect_blocks(content):
    kinds = [b.type for b in content]
    assert kinds == ["thinking", "redacted_thinking", "text", "tool_use"], kinds
    assert content[0].thinking == "The capital of France."
    assert content[0].signature == "sig-1"
    assert content[1].data == "b3BhcXVl"
    assert content[2].text == "Paris."
    assert (content[3].id, content[3].name, content[3].input) == (
        "toolu_1",
        "lookup",
        {"q": "France"},
    )


def check_anthropic():
    client = anthropic.Anthropic(base_url=HUB, api_key=KEY, max_retries=0)
    msgs = [{"role": "user", "content": ASK}]
    m = client.messages.create(model="demo", max_tokens=64, messages=msgs)
    expect_blocks(m.content)
    assert m.stop_reason == "tool_use"
    assert (m.usage.input_tokens, m.usage.output_tokens) == (15, 20)
    assert m.usage.cache_read_input_tokens == 80
    assert m.usage.cache_creation_input_tokens == 5

    seen = []
    with client.messages.stream(model="demo", max_tokens=64, messages=msgs) as s:
        for ev in s:
            if ev.type in ("thinking", "signature", "text"):
                seen.append(ev.type)
        final = s.get_final_message()
    assert seen == ["thinking", "thinking", "signature", "text"], seen
    expect_blocks(final.content)
    assert final.stop_reason == "tool_use"
    assert final.usage.cache_read_input_tokens == 80
    print("anthropic ok")


def check_boto3():
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=HUB,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}),
    )

    def add_key(request, **_):
        request.headers["x-api-key"] = KEY

    client.meta.events.register("before-send.bedrock-runtime.*", add_key)
    msgs = [{"role": "user", "content": [{"text": ASK}]}]
    out = client.converse(modelId="demo", messages=msgs)
    content = out["output"]["message"]["content"]
    assert content[0]["reasoningContent"]["reasoningText"] == {
        "text": "The capital of France.",
        "signature": "sig-1",
    }, content
    assert content[1]["reasoningContent"]["redactedContent"] == b"opaque"
    assert content[2] == {"text": "Paris."}
    assert content[3]["toolUse"]["input"] == {"q": "France"}
    assert out["stopReason"] == "tool_use"
    u = out["usage"]
    assert (u["inputTokens"], u["cacheReadInputTokens"], u["cacheWriteInputTokens"]) == (
        15,
        80,
        5,
    )
    assert out["additionalModelResponseFields"] == {"trace": {"id": "t-1"}}

    out = client.converse_stream(modelId="demo", messages=msgs)
    reasoning, signature, redacted, text, stop, extra, usage = "", "", b"", "", None, None, None
    for ev in out["stream"]:
        if "contentBlockDelta" in ev:
            delta = ev["contentBlockDelta"]["delta"]
            r = delta.get("reasoningContent", {})
            reasoning += r.get("text", "")
            signature += r.get("signature", "")
            redacted += r.get("redactedContent", b"")
            text += delta.get("text", "")
        elif "messageStop" in ev:
            stop = ev["messageStop"]["stopReason"]
            extra = ev["messageStop"].get("additionalModelResponseFields")
        elif "metadata" in ev:
            usage = ev["metadata"]["usage"]
    assert (reasoning, signature, redacted, text) == (
        "The capital of France.",
        "sig-1",
        b"opaque",
        "Paris.",
    )
    assert stop == "tool_use" and extra == {"trace": {"id": "t-1"}}
    assert usage["cacheReadInputTokens"] == 80 and usage["totalTokens"] == 120
    print("boto3 ok")


check_openai()
check_anthropic()
check_boto3()
