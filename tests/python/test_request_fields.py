"""Settings the official SDKs (and the agents built on them) send on every request reach the hub
and are accepted: what cannot change the answer is ignored (and audited), what only the caller's
API knows is passed through (the simulated upstream takes any API's and ignores them), history
blocks of earlier turns (thinking with its signature) and cache breakpoints are carried."""

import os

import boto3
import pytest
from anthropic import Anthropic
from botocore import UNSIGNED
from botocore.config import Config
from openai import OpenAI

BASE = os.environ["SWITCHYARD_BASE_URL"]
HUB_URL = BASE.removesuffix("/v1")
API_KEY = os.environ["SWITCHYARD_API_KEY"]


@pytest.fixture
def anthropic_client():
    return Anthropic(base_url=HUB_URL, api_key=API_KEY, max_retries=0, timeout=30)


def test_openai_end_user_and_metadata_fields_are_accepted():
    client = OpenAI(base_url=BASE, api_key=API_KEY, max_retries=0, timeout=30)
    resp = client.chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "hi"}],
        user="end-user-1",
        store=False,
        metadata={"team": "a"},
        service_tier="auto",
        max_completion_tokens=32,
        presence_penalty=0,
        n=1,
    )
    assert resp.choices[0].message.content


def test_anthropic_agent_request_shape_is_accepted(anthropic_client):
    """What a coding agent sends: system blocks with a cache breakpoint, metadata, thinking
    disabled, an earlier turn with a signed thinking block, and a cache breakpoint on the last
    user block — through `?beta=true` with a beta header, as the SDK's beta client sends it."""
    message = anthropic_client.beta.messages.create(
        model="demo",
        max_tokens=64,
        system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        metadata={"user_id": "user-1"},
        thinking={"type": "disabled"},
        messages=[
            {"role": "user", "content": "What is 17 * 3?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "17 * 3 = 51", "signature": "c2lnbmF0dXJl"},
                    {"type": "text", "text": "51."},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "text", "text": "Thanks", "cache_control": {"type": "ephemeral"}}],
            },
        ],
        betas=["mid-conversation-system-2026-04-07"],
    )
    assert message.type == "message"
    assert message.content[0].type == "text"


def test_boto3_guardrail_config_is_passed_through():
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=HUB_URL,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}),
    )

    def add_key(request, **_):
        request.headers["x-api-key"] = API_KEY

    client.meta.events.register("before-send.bedrock-runtime.*", add_key)
    resp = client.converse(
        modelId="demo",
        messages=[{"role": "user", "content": [{"text": "hi"}]}],
        guardrailConfig={"guardrailIdentifier": "g", "guardrailVersion": "1"},
        requestMetadata={"team": "a"},
    )
    assert resp["output"]["message"]["content"][0]["text"]
