"""The playground and the vector store in real Chromium against the package's ``gpuyard up``,
with real models: the org deploys the built-in CPU workers as clusters (an embedding model,
WordLlama, shipped in its package; a chat model, the tiny random-weight one that ``gpuyard
worker make-tiny-model`` writes), as a customer would. Nothing is downloaded.

A file uploaded to a collection is embedded by the server's file controller and searched; a
chat answer streams into the page; an embedding shows its dimensions.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.kit import check_page, expect, go
from tests.cli.up_kit import Server
from tests.workers.conftest import require

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("console-browser")]

require("wordllama", "torch", "transformers", "tokenizers")  # the workers extra

HEALTHY_WITHIN_S = 180.0
# The interpreter as the agent's sandbox binds it (a virtual environment behind a symlink is
# bound where it really is).
PYTHON = Path(sys.prefix).resolve() / "bin" / "python"
WORKER = f"exec {PYTHON} -m gpuyard.cli.main worker"
DOCUMENT = """# Engines

The diesel engine needs oil: change the engine oil every season and check its level weekly.

# Orchard

Apples and pears grow in the orchard; the cherry trees flower in spring.
"""


def _deploy(up: Server, key: str, name: str, command: str, model: str) -> str:
    env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    body = {
        "name": name,
        "gpu_type": "rtx-4090",
        "container": f"gpuyard/worker:{name}",
        "command": command,
        "models": [model],
        "env": env,
    }
    r = httpx.post(
        f"{up.base_url}/v1/clusters",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _wait_served(up: Server, key: str, cluster_id: str, model: str) -> None:
    """Until the cluster is healthy and the gateway lists its model for the key."""
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    with httpx.Client(base_url=up.base_url, headers={"Authorization": f"Bearer {key}"}) as api:
        while True:
            found = api.get(f"/v1/clusters/{cluster_id}", timeout=30).json()
            assert found["status"] != "failed", (found.get("status_reason"), found)
            if found["status"] == "healthy":
                listed = api.get("/v1/models", timeout=30).json()["data"]
                if model in {m["id"] for m in listed}:
                    return
            assert time.monotonic() < deadline, (found, up.output()[-4000:])
            time.sleep(0.5)


@pytest.fixture(scope="module")
def models(up: Server, customer: Any) -> dict[str, str]:
    """The org's two clusters (created at once; each test waits for the one it needs)."""
    key = customer.api_key
    embed = f"{WORKER} embeddings --model wordllama --model-id words"
    made = {"embeddings": _deploy(up, key, "embeddings", embed, "words")}
    # The sandbox sees the replica's own home, not this test's files: the model is made there.
    tiny = "$HOME/tiny"
    make = f"[ -d {tiny} ] || {PYTHON} -m gpuyard.cli.main worker make-tiny-model {tiny}"
    chat = f"{make} && {WORKER} chat --model {tiny} --model-id tiny-chat --max-new-tokens 24"
    made["chat"] = _deploy(up, key, "chat", chat, "tiny-chat")
    return made


@pytest.mark.timeout(300)
def test_upload_a_file_to_a_collection_and_search_it(
    up: Server, customer: Any, models: dict[str, str], screenshots: Path, tmp_path: Path
) -> None:
    _wait_served(up, customer.api_key, models["embeddings"], "words")
    page = customer
    go(page, "Vector store")
    expect(page.get_by_text("No collections.")).to_be_visible()
    page.get_by_label("Name").fill("manuals")
    page.get_by_label("Embedding model").select_option("words")
    page.get_by_role("button", name="Create collection").click()
    expect(page.get_by_role("heading", name="Collection manuals", level=1)).to_be_visible()

    document = tmp_path / "manual.md"
    document.write_text(DOCUMENT)
    page.get_by_label("File", exact=True).set_input_files(str(document))
    page.get_by_role("button", name="Upload").click()
    status = page.get_by_test_id("file-status")
    expect(status).to_contain_text("completed")  # enqueued, processing: polled, no reload
    expect(page.get_by_test_id("items")).to_contain_text("Engines")
    expect(page.get_by_test_id("file-items")).to_have_text("1")
    check_page(page, screenshots, "collection")

    page.get_by_label("Search for").fill("how often should the engine oil be changed")
    page.get_by_role("button", name="Search").click()
    best = page.get_by_test_id("results").get_by_role("listitem").first
    expect(best).to_contain_text("diesel engine needs oil")
    expect(best.locator(".score")).to_have_text(re.compile(r"^0\.\d{3}$"))
    go(page, "Vector store")
    expect(page.get_by_role("link", name="manuals", exact=True)).to_be_visible()


@pytest.mark.timeout(300)
def test_chat_in_the_playground_with_a_streamed_answer(
    up: Server, customer: Any, models: dict[str, str], screenshots: Path
) -> None:
    _wait_served(up, customer.api_key, models["chat"], "tiny-chat")
    page = customer
    go(page, "Playground")
    page.get_by_label("Chat model").select_option("tiny-chat")
    page.get_by_label("Message").fill("Hello <b>there</b>")
    page.get_by_role("button", name="Send").click()
    answer = page.get_by_test_id("answer")  # the streamed turn, once its stream has ended
    expect(answer).to_be_visible()
    transcript = page.get_by_test_id("transcript")
    expect(transcript.locator(".turn.user")).to_have_text("You Hello <b>there</b>")  # as text
    assert int(answer.get_attribute("data-chunks") or 0) > 1  # appended delta by delta
    assert answer.locator(".text").inner_text().strip()
    expect(page.get_by_label("Message")).to_have_value("")
    page.get_by_label("Message").fill("And again")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_test_id("answer")).to_have_count(2)  # the conversation goes on
    check_page(page, screenshots, "playground-chat")

    page.get_by_label("Embedding model").select_option("words")
    page.get_by_label("Text to embed").fill("engine oil")
    page.get_by_role("button", name="Embed").click()
    expect(page.get_by_test_id("dimensions")).to_have_text("256")
    check_page(page, screenshots, "playground-embedding")
