"""The official `anthropic` SDK, unchanged, against the hub's `/v1/messages` (base_url pointed at
the hub, the hub API key as `api_key`, which the SDK sends as `x-api-key`)."""

import os

import anthropic
import pytest
from anthropic import Anthropic

# SWITCHYARD_BASE_URL ends with /v1 (the OpenAI SDK's convention); the Anthropic SDK adds /v1.
HUB_URL = os.environ["SWITCHYARD_BASE_URL"].removesuffix("/v1")
API_KEY = os.environ["SWITCHYARD_API_KEY"]

PNG_1X1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture
def client():
    return Anthropic(base_url=HUB_URL, api_key=API_KEY, max_retries=0, timeout=30)


def test_non_streaming_message(client):
    raw = client.messages.with_raw_response.create(
        model="demo",
        max_tokens=32,
        system="be brief",
        messages=[{"role": "user", "content": "Hello from the anthropic SDK"}],
    )
    assert raw.headers["x-switchyard-provider"] == "simulated"
    assert raw.headers["request-id"]
    message = raw.parse()
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.content[0].type == "text"
    assert "Hello from the anthropic SDK" in message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_image_block_is_accepted(client):
    message = client.messages.create(
        model="demo",
        max_tokens=32,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "describe this picture"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_1X1},
                    },
                ],
            }
        ],
    )
    assert "describe this picture" in message.content[0].text


def test_streaming_message(client):
    with client.messages.stream(
        model="demo",
        max_tokens=64,
        messages=[{"role": "user", "content": "stream these words please"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "stream these words please" in text
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_raw_stream_event_types(client):
    events = list(
        client.messages.create(
            model="demo",
            max_tokens=64,
            stream=True,
            messages=[{"role": "user", "content": "one two three"}],
        )
    )
    types = [e.type for e in events]
    assert types[0] == "message_start"
    assert types[-2:] == ["message_delta", "message_stop"]
    assert "content_block_start" in types and "content_block_stop" in types
    deltas = [e for e in events if e.type == "content_block_delta"]
    assert deltas and all(d.delta.type == "text_delta" for d in deltas)


def test_bad_key_is_authentication_error():
    bad = Anthropic(base_url=HUB_URL, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as err:
        bad.messages.create(
            model="demo", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.status_code == 401
    assert err.value.body["error"]["type"] == "authentication_error"


def test_unknown_model_is_not_found(client):
    with pytest.raises(anthropic.NotFoundError) as err:
        client.messages.create(
            model="no-such-model", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.body["error"]["type"] == "not_found_error"


def test_unsupported_block_is_bad_request(client):
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(
            model="demo",
            max_tokens=8,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {"type": "text", "media_type": "text/plain", "data": "x"},
                        }
                    ],
                }
            ],
        )
    assert err.value.body["type"] == "error"
    assert err.value.body["error"]["type"] == "invalid_request_error"
