"""The official `openai` SDK's embeddings call against the hub's `/v1/embeddings`.

The SDK asks for `encoding_format="base64"` unless told otherwise and decodes it itself, so both
encodings are exercised."""

import os

import openai
import pytest
from openai import OpenAI

BASE_URL = os.environ["SWITCHYARD_BASE_URL"]
API_KEY = os.environ["SWITCHYARD_API_KEY"]


@pytest.fixture
def client():
    return OpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0, timeout=30)


def test_embeddings_default_base64(client):
    raw = client.embeddings.with_raw_response.create(model="demo", input=["first text", "second"])
    assert raw.headers["x-switchyard-provider"] == "simulated"
    resp = raw.parse()
    assert [d.index for d in resp.data] == [0, 1]
    assert all(len(d.embedding) == 256 for d in resp.data)
    assert resp.data[0].embedding != resp.data[1].embedding
    assert resp.usage.prompt_tokens > 0


def test_embeddings_float_and_dimensions_match(client):
    as_b64 = client.embeddings.create(model="demo", input="same text", dimensions=64)
    as_float = client.embeddings.create(
        model="demo", input="same text", dimensions=64, encoding_format="float"
    )
    assert len(as_float.data[0].embedding) == 64
    assert as_b64.data[0].embedding == as_float.data[0].embedding


def test_embeddings_token_arrays_are_refused(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="demo", input=[[1, 2, 3]])
    assert err.value.body["type"] == "invalid_request_error"
