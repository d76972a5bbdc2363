"""Prompt templates and the response cache through the official `openai` SDK (demo config:
alias `demo-cached` has the cache on, prompt `greet` takes `{{name}}`)."""

import json
import os
import urllib.request

import openai
import pytest
from openai import OpenAI

BASE_URL = os.environ["SWITCHYARD_BASE_URL"]
API_KEY = os.environ["SWITCHYARD_API_KEY"]


@pytest.fixture
def client():
    return OpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0, timeout=30)


def test_prompt_field_via_extra_body(client):
    raw = client.chat.completions.with_raw_response.create(
        model="demo",
        messages=[],
        extra_body={"prompt": {"name": "greet", "variables": {"name": "Ada Lovelace"}}},
    )
    assert raw.headers["x-switchyard-prompt"] == "greet@1"
    text = raw.parse().choices[0].message.content
    assert "Say hello to Ada Lovelace" in text


def test_prompt_missing_variable_is_400(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="demo",
            messages=[],
            extra_body={"prompt": {"name": "greet", "variables": {}}},
        )
    assert err.value.status_code == 400
    assert "`name`" in err.value.body["message"]


def test_named_prompt_endpoint():
    req = urllib.request.Request(
        f"{BASE_URL}/prompts/greet",
        data=json.dumps({"variables": {"name": "Grace"}}).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
        assert r.headers["x-switchyard-prompt"] == "greet@1"
        body = json.loads(r.read())
    assert "Say hello to Grace" in body["choices"][0]["message"]["content"]


def test_cache_miss_then_hit(client):
    messages = [{"role": "user", "content": f"cache check {os.getpid()}"}]
    first = client.chat.completions.with_raw_response.create(
        model="demo-cached", messages=messages, temperature=0
    )
    second = client.chat.completions.with_raw_response.create(
        model="demo-cached", messages=messages, temperature=0
    )
    assert first.headers["x-switchyard-cache"] == "miss"
    assert second.headers["x-switchyard-cache"] == "hit"
    assert (
        first.parse().choices[0].message.content
        == second.parse().choices[0].message.content
    )
    # Streaming the same request: replayed from the cache.
    stream = client.chat.completions.create(
        model="demo-cached", messages=messages, temperature=0, stream=True
    )
    streamed = "".join(
        c.choices[0].delta.content or "" for c in stream if c.choices
    )
    assert streamed == first.parse().choices[0].message.content
