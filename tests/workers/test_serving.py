"""The shared worker scaffold in process: health while loading, model listing, error shapes."""

from __future__ import annotations

import threading

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from gpuyard.workers.json_body import read_json
from gpuyard.workers.serving import ModelSlot, create_app


class Echo(BaseModel):
    text: str


def build(gate: threading.Event, fail: bool = False) -> tuple[TestClient, ModelSlot[str]]:
    def load() -> str:
        gate.wait(5)
        if fail:
            raise RuntimeError("no weights here")
        return "model"

    slot: ModelSlot[str] = ModelSlot("demo", load)

    async def echo(request: Request) -> Response:
        body = await read_json(request, Echo, max_bytes=64)
        return JSONResponse({"model": slot.get(), "text": body.text})

    app = create_app(slot, [Route("/v1/echo", echo, methods=["POST"])])
    return TestClient(app), slot


def test_health_is_503_while_loading_then_200() -> None:
    gate = threading.Event()
    client, slot = build(gate)
    with client:
        loading = client.get("/health")
        assert loading.status_code == 503 and loading.json()["status"] == "loading"
        busy = client.post("/v1/echo", json={"text": "hi"})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["code"] == "model_loading"
        gate.set()
        assert slot.loaded.wait(5)
        assert client.get("/health").json() == {"status": "ok", "model": "demo"}
        assert client.post("/v1/echo", json={"text": "hi"}).json() == {
            "model": "model",
            "text": "hi",
        }


def test_a_failed_load_is_reported() -> None:
    gate = threading.Event()
    gate.set()
    client, slot = build(gate, fail=True)
    failures: list[BaseException] = []
    slot.on_failure = failures.append
    with client:
        for _ in range(100):
            if failures:
                break
            threading.Event().wait(0.02)
        assert failures and "no weights" in str(failures[0])
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "failed"


def test_models_and_error_shapes() -> None:
    gate = threading.Event()
    gate.set()
    client, slot = build(gate)
    with client:
        assert slot.loaded.wait(5)
        listed = client.get("/v1/models").json()
        assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == ["demo"]
        assert client.get("/v1/models/demo").json()["owned_by"] == "gpuyard"
        unknown = client.get("/v1/models/other")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "model_not_found"
        cases = {
            "/v1/echo": (client.post("/v1/echo", json={"text": 3}), 400, "invalid_value"),
            "too big": (
                client.post("/v1/echo", json={"text": "x" * 100}),
                413,
                "request_too_large",
            ),
            "not json": (client.post("/v1/echo", content=b"{"), 400, "invalid_json"),
            "empty": (client.post("/v1/echo", content=b""), 400, "invalid_json"),
            "no route": (client.get("/v2/nothing"), 404, "not_found"),
            "method": (client.get("/v1/echo"), 405, "method_not_allowed"),
        }
        for name, (response, status, code) in cases.items():
            assert response.status_code == status, name
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}, name
            assert error["code"] == code and error["message"], name
        assert client.post("/v1/echo", json={"text": 3}).json()["error"]["param"] == "text"
