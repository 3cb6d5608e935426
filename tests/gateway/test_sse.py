"""The SSE checker against a plain reading of the format: whatever the reads a stream arrives in,
the gateway passes on exactly the well-formed events before the first malformed one (less those
it drops), with their data, and notices ``[DONE]``."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gpuyard.gateway.sse import MalformedEvent, SseEvents
from gpuyard.gateway.usage import is_usage_only


def chunk_event(n: int) -> bytes:
    return b'data: {"choices":[{"index":0,"delta":{"content":"t%d"}}]}\n\n' % n


USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
DONE = b"data: [DONE]\n\n"

EVENTS = st.one_of(
    st.integers(0, 99).map(chunk_event),
    st.just(USAGE),
    st.just(DONE),
    st.just(b": keep-alive\n\n"),  # a comment only: no data
    st.just(b'event: message\nid: 7\ndata: {"a":\ndata: 1}\n\n'),  # multi-line data
    st.just(b"data:[DONE]\n\n"),  # no space after the colon
    st.just(b"\n"),  # an extra blank line
    st.just(b"data: {oops\n\n"),  # data that is not JSON
    st.just(b"<html>\n\n"),  # not an SSE line
)


def reference(stream: bytes, drop: bool) -> tuple[bytes, list[Any], bool, bool]:
    """What should be passed on, the data seen, whether [DONE] came, whether it broke: each
    event read line by line."""
    passed, data, done = b"", [], False
    for raw in stream.split(b"\n\n"):
        if not raw.strip(b"\n"):
            continue
        lines = [ln for ln in raw.split(b"\n") if ln and not ln.startswith(b":")]
        if any(not ln.startswith((b"data:", b"event:", b"id:", b"retry:")) for ln in lines):
            return passed, data, done, True
        payload = b"\n".join(ln[5:].removeprefix(b" ") for ln in lines if ln.startswith(b"data:"))
        obj = None
        if payload.strip() == b"[DONE]":
            done = True
        elif any(ln.startswith(b"data:") for ln in lines):
            try:
                obj = json.loads(payload)
            except ValueError:
                return passed, data, done, True
            data.append(obj)
        if not (drop and is_usage_only(obj)):
            passed += raw.lstrip(b"\n") + b"\n\n"
    return passed, data, done, False


def relayed(reads: list[bytes], drop: bool) -> tuple[bytes, list[Any], bool, bool]:
    events = SseEvents(drop=is_usage_only if drop else None)
    passed, data, done = b"", [], False
    for batch in [*(events.feed(r) for r in reads), events.end()]:
        passed += batch.raw
        data += batch.data
        done = done or batch.done
        if batch.malformed is not None:
            assert isinstance(batch.malformed, MalformedEvent)
            return passed, data, done, True
    return passed, data, done, False


def normalised(result: tuple[bytes, list[Any], bool, bool]) -> tuple[bytes, list[Any], bool, bool]:
    """Blank lines between events carry nothing: compare without the extra ones."""
    passed, data, done, broke = result
    events = [e.lstrip(b"\n") for e in passed.split(b"\n\n") if e.strip(b"\n")]
    return b"".join(e + b"\n\n" for e in events), data, done, broke


@settings(max_examples=300, deadline=None)
@given(
    st.lists(EVENTS, max_size=12),
    st.lists(st.integers(0, 400), max_size=6),
    st.booleans(),
)
def test_any_split_of_a_stream_is_checked_as_a_whole(
    events: list[bytes], cuts: list[int], drop: bool
) -> None:
    stream = b"".join(events)
    points = sorted({min(c, len(stream)) for c in cuts})
    reads = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert normalised(relayed(reads, drop)) == normalised(reference(stream, drop))


def test_usual_events_pass_as_the_bytes_received() -> None:
    read = chunk_event(1) + chunk_event(2) + DONE
    batch = SseEvents().feed(read + b"data: {")
    assert batch.raw is not read and batch.raw == read
    assert [d["choices"][0]["delta"]["content"] for d in batch.data] == ["t1", "t2"]
    assert batch.done and batch.malformed is None


def test_a_dropped_event_leaves_the_rest_in_order() -> None:
    batch = SseEvents(drop=is_usage_only).feed(chunk_event(1) + USAGE + chunk_event(2) + DONE)
    assert batch.raw == chunk_event(1) + chunk_event(2) + DONE
    assert len(batch.data) == 3 and batch.data[1]["usage"]["completion_tokens"] == 2


def test_crlf_line_ends_are_read_as_lf() -> None:
    batch = SseEvents().feed(b'data: {"a": 1}\r\n\r\ndata: [DONE]\r\n\r\n')
    assert batch.raw == b'data: {"a": 1}\n\n' + DONE and batch.data == [{"a": 1}] and batch.done


def test_events_before_a_malformed_one_are_still_passed_on() -> None:
    batch = SseEvents().feed(chunk_event(1) + b"data: {oops\n\n" + chunk_event(2))
    assert batch.raw == chunk_event(1)
    assert str(batch.malformed) == "event data is not JSON: b'{oops'"
