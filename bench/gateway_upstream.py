"""A fast fake OpenAI-compatible model server for the gateway benchmark, in its own process.

Raw asyncio protocol on uvloop (when installed), HTTP/1.1 with keep-alive, no framework: it must
cost far less per request than anything measured through it. Routes:

- ``GET /health``: 200, for gpuyard's cluster controller;
- ``GET /v1/models``: the one model it serves (gpuyard discovers it from here);
- ``POST /v1/chat/completions`` (and ``/v1/completions``, ``/chat/completions``): with
  ``"stream": true`` an SSE answer, chunked, one write per event: ``--tokens`` content chunks, a
  finish chunk, the usage chunk when ``stream_options.include_usage`` is set (as OpenAI does), and
  ``data: [DONE]``; without it one JSON completion.

The answer is the same for every request and is built once at start-up.

    python bench/gateway_upstream.py --port 8001 --model bench-model --tokens 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from dataclasses import dataclass
from typing import Any, cast

from event_loops import new_event_loop

PROMPT_TOKENS = 12
CHUNKED_END = b"0\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Answers:
    """Every byte the server ever sends, prepared once."""

    stream_head: bytes
    stream_events: tuple[bytes, ...]  # each already a chunk of the chunked encoding
    usage_event: bytes
    done_event: bytes
    completion: bytes
    models: bytes
    health: bytes
    not_found: bytes


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _event(obj: Any) -> bytes:
    return _chunk(b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n")


def _json_response(status: str, obj: Any) -> bytes:
    body = json.dumps(obj, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def build_answers(model: str, tokens: int) -> Answers:
    words = [f" tok{i}" for i in range(tokens)]
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": model}
    events = [
        _event({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": w}}]})
        for w in words
    ]
    events.append(_event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    usage = {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": tokens,
        "total_tokens": PROMPT_TOKENS + tokens,
    }
    completion = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(words)},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }
    listing = {
        "object": "list",
        "data": [{"id": model, "object": "model", "created": 0, "owned_by": "bench"}],
    }
    return Answers(
        stream_head=(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
        ),
        stream_events=tuple(events),
        usage_event=_event({**base, "choices": [], "usage": usage}),
        done_event=_chunk(b"data: [DONE]\n\n"),
        completion=_json_response("200 OK", completion),
        models=_json_response("200 OK", listing),
        health=_json_response("200 OK", {"status": "ok"}),
        not_found=_json_response("404 Not Found", {"error": {"message": "not found"}}),
    )


COMPLETION_PATHS = frozenset(
    {b"/v1/chat/completions", b"/v1/completions", b"/chat/completions", b"/completions"}
)


class FakeOpenAI(asyncio.Protocol):
    """One connection: parses requests (keep-alive, pipelining) and answers from ``Answers``."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self._one_request():
            pass

    def _one_request(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = self.buffer[:end]
        length = 0
        close = False
        lines = head.split(b"\r\n")
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if len(self.buffer) < end + 4 + length:
            return False
        body = self.buffer[end + 4 : end + 4 + length]
        self.buffer = self.buffer[end + 4 + length :]
        method, path, _ = lines[0].split(b" ", 2)
        self._answer(method, path.split(b"?", 1)[0], body)
        if close and self.transport is not None:
            self.transport.close()
            return False
        return True

    def _answer(self, method: bytes, path: bytes, body: bytes) -> None:
        assert self.transport is not None
        write = self.transport.write
        a = self.answers
        if method == b"POST" and path in COMPLETION_PATHS:
            request = json.loads(body or b"{}")
            if not request.get("stream"):
                write(a.completion)
                return
            write(a.stream_head)
            for event in a.stream_events:
                write(event)
            if (request.get("stream_options") or {}).get("include_usage"):
                write(a.usage_event)
            write(a.done_event + CHUNKED_END)
        elif method == b"GET" and path == b"/health":
            write(a.health)
        elif method == b"GET" and path == b"/v1/models":
            write(a.models)
        else:
            write(a.not_found)


async def serve(host: str, port: int, answers: Answers) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FakeOpenAI(answers), host, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"fake upstream on http://{host}:{port}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="A fast fake OpenAI-compatible upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="bench-model")
    parser.add_argument("--tokens", type=int, default=16, help="content chunks per answer")
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve(args.host, args.port, build_answers(args.model, args.tokens)))


if __name__ == "__main__":
    main()
