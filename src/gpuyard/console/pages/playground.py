"""The inference playground: chat (streamed token by token), embeddings (their dimensions and
first values) and speech (played in the page), over the OpenAI-compatible API with the
signed-in key. The model pickers list what ``/v1/models``, ``/v1/audio/models`` and
``/v1/audio/voices`` answer for the key.

Chat posts a form. With scripts, console.js sends it to ``/playground/chat/stream``, which
relays the API's Server-Sent Events (``stream: true``) to the page as they come; without, the
form's own action answers the whole reply in a new page. The conversation so far travels in a
hidden field, so the server keeps nothing.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gpuyard.console.api import ApiError
from gpuyard.console.pages.wrap import Wrap
from gpuyard.console.stream import post_stream
from gpuyard.console.web import InvalidForm, NavItem, Visit, action, integer, page, text

NAV = NavItem("/playground", "Playground")
ROLES = ("user", "assistant")
FIRST_VALUES = 8  # of an embedding, shown
MAX_TURNS = 100  # of a conversation the form carries


async def model_ids(visit: Visit) -> list[str]:
    """What ``/v1/models`` lists for the key."""
    return [m["id"] for m in (await visit.api.get("/v1/models"))["data"]]


async def view(visit: Visit, error: str | None = None, status: int = 200, **shown: Any) -> Response:
    api = visit.api
    posted = await visit.form() if visit.request.method == "POST" else {}
    turns = shown.pop("turns", None) or _turns_or_none(posted)
    return visit.render(
        "playground.html",
        status=status,
        error=error,
        models=await model_ids(visit),
        speech_models=(await api.get("/v1/audio/models"))["speech"],
        voices=(await api.get("/v1/audio/voices"))["voices"],
        form=posted,
        turns=turns,
        history=json.dumps(turns),
        **shown,
    )


def _turns_or_none(form: dict[str, str]) -> list[dict[str, str]]:
    try:
        return conversation(form)
    except InvalidForm:
        return []


def conversation(form: dict[str, str]) -> list[dict[str, str]]:
    """The turns so far, from the form's hidden field; anything but a list of user and
    assistant messages is refused (a page from before, or a field someone changed)."""
    raw = form.get("history") or "[]"
    try:
        turns = json.loads(raw)
    except ValueError:
        turns = None
    ok = isinstance(turns, list) and len(turns) <= MAX_TURNS
    ok = ok and all(
        isinstance(t, dict)
        and set(t) == {"role", "content"}
        and t["role"] in ROLES
        and isinstance(t["content"], str)
        for t in turns
    )
    if not ok:
        raise InvalidForm("The conversation was damaged: reload the page to start again.")
    return list(turns)


def chat_body(form: dict[str, str], *, stream: bool) -> dict[str, Any]:
    """The chat completion request the form asks for: the conversation and the new message."""
    message = text(form, "message")
    if message is None:
        raise InvalidForm("Type a message to send.")
    body: dict[str, Any] = {
        "model": form.get("model", ""),
        "messages": [*conversation(form), {"role": "user", "content": message}],
        "stream": stream,
    }
    max_tokens = integer(form, "max_tokens", "Maximum tokens")
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


async def chat(visit: Visit) -> Response:
    """Without scripts: the whole answer, in the page."""
    form = await visit.form()
    body = chat_body(form, stream=False)
    answer = await visit.api.post("/v1/chat/completions", body)
    reply = (answer.get("choices") or [{}])[0].get("message") or {}
    turns = [*body["messages"], {"role": "assistant", "content": reply.get("content") or ""}]
    return await view(visit, turns=turns, sent=True)


async def chat_stream(visit: Visit) -> Response:
    """With scripts: the API's event stream as it comes; a refusal as JSON ``{"error"}`` in
    the API's words, under its status, for the page to show."""
    try:
        body = chat_body(await visit.form(), stream=True)
        streamed = await post_stream(visit.api, "/v1/chat/completions", body)
    except ApiError as exc:
        if exc.signed_out:
            raise
        return JSONResponse({"error": exc.message, "code": exc.code}, status_code=exc.status)
    return StreamingResponse(
        streamed.chunks, media_type=streamed.media_type, headers={"x-accel-buffering": "no"}
    )


async def embeddings(visit: Visit) -> Response:
    form = await visit.form()
    body = {
        "model": form.get("model", ""),
        "input": form.get("input", ""),
        "encoding_format": "float",
    }
    answer = await visit.api.post("/v1/embeddings", body)
    vector = answer["data"][0]["embedding"]
    embedded = {
        "model": answer.get("model") or body["model"],
        "dimensions": len(vector),
        "first": [f"{v:.4f}" for v in vector[:FIRST_VALUES]],
        "tokens": (answer.get("usage") or {}).get("prompt_tokens"),
    }
    return await view(visit, embedded=embedded)


async def speech(visit: Visit) -> Response:
    form = await visit.form()
    body = {"model": form.get("model", ""), "input": form.get("input", "")}
    if voice := text(form, "voice"):
        body["voice"] = voice
    media, audio = await visit.api.audio("/v1/audio/speech", body)
    if not media.startswith("audio/"):
        raise InvalidForm(f"The model answered {media}, not audio.")
    spoken = {
        "src": f"data:{media};base64,{base64.b64encode(audio).decode()}",
        "media": media,
        "size": len(audio),
    }
    return await view(visit, spoken=spoken)


def routes(wrap: Wrap) -> list[Route]:
    return [
        Route(NAV.path, wrap(page(view)), methods=["GET"]),
        Route(NAV.path + "/chat", wrap(action(view, chat)), methods=["POST"]),
        Route(NAV.path + "/chat/stream", wrap(chat_stream), methods=["POST"]),
        Route(NAV.path + "/embeddings", wrap(action(view, embeddings)), methods=["POST"]),
        Route(NAV.path + "/speech", wrap(action(view, speech)), methods=["POST"]),
    ]
