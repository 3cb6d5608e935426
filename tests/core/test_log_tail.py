"""Reading a kept log tail: the last lines, or what follows an offset a client already showed."""

from __future__ import annotations

from gpuyard.core.log_tail import LogSlice, new_lines, read_tail

TAIL = "two\nthree\nfour\n"  # the last 15 bytes of a 30-byte output


def test_last_lines_say_where_they_are() -> None:
    assert read_tail(TAIL, 30, lines=2) == LogSlice("three\nfour\n", 30, 19)
    assert read_tail(TAIL, 30, lines=10) == LogSlice(TAIL, 30, 15)
    assert read_tail(TAIL, None, lines=1) == LogSlice("four\n", None, None)
    assert read_tail("", None, lines=5) == LogSlice("", None, None)


def test_after_an_offset_only_what_follows() -> None:
    assert read_tail(TAIL, 30, lines=1, after=20) == LogSlice("hree\nfour\n", 30, 20)
    assert read_tail(TAIL, 30, lines=1, after=30) == LogSlice("", 30, 30)
    assert read_tail(TAIL, 30, lines=1, after=15) == LogSlice(TAIL, 30, 15)


def test_what_is_no_longer_kept_or_started_over_shows_in_the_offsets() -> None:
    assert read_tail(TAIL, 30, lines=1, after=5) == LogSlice(TAIL, 30, 15)  # 10 bytes lost
    assert read_tail(TAIL, 14, lines=1, after=30) == LogSlice(TAIL, 14, 0)  # started over
    assert read_tail(TAIL, None, lines=1, after=5) == LogSlice("four\n", None, None)


def test_multibyte_output_is_counted_in_bytes() -> None:
    tail = "é\nok\n"  # 6 bytes
    assert read_tail(tail, 6, lines=1) == LogSlice("ok\n", 6, 3)
    assert read_tail(tail, 6, lines=1, after=3) == LogSlice("ok\n", 6, 3)


def test_new_lines_of_an_uncounted_tail() -> None:
    assert new_lines([], ["a\n", "b\n"]) == ["a\n", "b\n"]
    assert new_lines(["a\n", "b\n"], ["b\n", "c\n", "d\n"]) == ["c\n", "d\n"]
    assert new_lines(["a\n", "b\n"], ["a\n", "b\n"]) == []
    assert new_lines(["x\n"], ["y\n", "z\n"]) == ["y\n", "z\n"]  # no overlap: all of it
