"""The official `openai` SDK, unchanged, against the hub (base_url pointed at it)."""

import os

import openai
import pytest
from openai import OpenAI

BASE_URL = os.environ["SWITCHYARD_BASE_URL"]
API_KEY = os.environ["SWITCHYARD_API_KEY"]


@pytest.fixture
def client():
    return OpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0, timeout=30)


def test_non_streaming_call(client):
    raw = client.chat.completions.with_raw_response.create(
        model="demo",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "Hello from the SDK"},
        ],
        max_tokens=32,
    )
    assert raw.headers["x-switchyard-provider"] == "simulated"
    assert int(raw.headers["x-switchyard-attempts"]) >= 1
    completion = raw.parse()
    assert completion.object == "chat.completion"
    text = completion.choices[0].message.content
    assert "Hello from the SDK" in text
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_streaming_call(client):
    stream = client.chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "stream these words please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    parts, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                parts.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    text = "".join(parts)
    assert "stream these words please" in text
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert "demo" in ids


def test_bad_key_is_401():
    bad = OpenAI(base_url=BASE_URL, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.status_code == 401
    assert err.value.body["code"] == "invalid_api_key"


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.status_code == 404
    assert err.value.body["code"] == "model_not_found"
