"""boto3's `bedrock-runtime` client, unchanged but for `endpoint_url` and one event hook, against
the hub's Bedrock Converse surface (`/model/{modelId}/converse` and `/converse-stream`).

The hub does not check SigV4: the hook adds the hub API key as `x-api-key` to every request
(docs/api.md, "Bedrock Converse"). Both an unsigned client and a normally signed one work."""

import base64
import os

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

HUB_URL = os.environ["SWITCHYARD_BASE_URL"].removesuffix("/v1")
API_KEY = os.environ["SWITCHYARD_API_KEY"]

PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def hub_client(api_key=API_KEY, signed=False):
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"})
    if not signed:
        config = config.merge(Config(signature_version=UNSIGNED))
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=HUB_URL,
        region_name="us-east-1",
        aws_access_key_id="unused",
        aws_secret_access_key="unused",
        config=config,
    )

    def add_hub_key(request, **_):
        request.headers["x-api-key"] = api_key

    client.meta.events.register("before-send.bedrock-runtime.*", add_hub_key)
    return client


@pytest.fixture
def client():
    return hub_client()


def test_converse(client):
    resp = client.converse(
        modelId="demo",
        system=[{"text": "be brief"}],
        messages=[{"role": "user", "content": [{"text": "Hello from boto3"}]}],
        inferenceConfig={"maxTokens": 32, "temperature": 0.5},
    )
    text = resp["output"]["message"]["content"][0]["text"]
    assert "Hello from boto3" in text
    assert resp["output"]["message"]["role"] == "assistant"
    assert resp["stopReason"] in ("end_turn", "max_tokens")
    usage = resp["usage"]
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"] > 0
    assert resp["ResponseMetadata"]["HTTPHeaders"]["x-switchyard-provider"] == "simulated"


def test_converse_signed_client_works_too():
    resp = hub_client(signed=True).converse(
        modelId="demo",
        messages=[{"role": "user", "content": [{"text": "signed request"}]}],
    )
    assert "signed request" in resp["output"]["message"]["content"][0]["text"]


def test_converse_with_image(client):
    resp = client.converse(
        modelId="demo",
        messages=[
            {
                "role": "user",
                "content": [
                    {"text": "what is in this picture"},
                    {"image": {"format": "png", "source": {"bytes": PNG_1X1}}},
                ],
            }
        ],
    )
    assert "what is in this picture" in resp["output"]["message"]["content"][0]["text"]


def test_converse_stream(client):
    resp = client.converse_stream(
        modelId="demo",
        messages=[{"role": "user", "content": [{"text": "stream these words please"}]}],
        inferenceConfig={"maxTokens": 64},
    )
    kinds, text, stop, usage = [], [], None, None
    for event in resp["stream"]:
        (kind, body), = event.items()
        kinds.append(kind)
        if kind == "contentBlockDelta":
            text.append(body["delta"]["text"])
        elif kind == "messageStop":
            stop = body["stopReason"]
        elif kind == "metadata":
            usage = body["usage"]
    assert kinds[0] == "messageStart"
    assert kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    assert "stream these words please" in "".join(text)
    assert stop == "end_turn"
    assert usage["outputTokens"] > 0


def test_bad_key_is_access_denied():
    with pytest.raises(ClientError) as err:
        hub_client(api_key="sk-wrong").converse(
            modelId="demo", messages=[{"role": "user", "content": [{"text": "hi"}]}]
        )
    assert err.value.response["Error"]["Code"] == "AccessDeniedException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_unknown_model_is_resource_not_found(client):
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.converse(
            modelId="no-such-model", messages=[{"role": "user", "content": [{"text": "hi"}]}]
        )


def test_unsupported_block_is_validation_exception(client):
    with pytest.raises(client.exceptions.ValidationException) as err:
        client.converse(
            modelId="demo",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"document": {"format": "txt", "name": "doc", "source": {"bytes": b"hello"}}}
                    ],
                }
            ],
        )
    assert "document" in err.value.response["Error"]["Message"]
