"""Stream windows: they start small and grow, are validated, and carry what they release; where a refusal
starts after released text."""

from __future__ import annotations

import pytest

from langchain_nemoguard import StreamOptions
from langchain_nemoguard.core.streaming import refusal_after
from langchain_nemoguard.core.windows import HoldbackBuffer


def test_default_windows_start_at_a_few_dozen_characters_and_double() -> None:
    assert StreamOptions().window_sizes(7) == [40, 80, 160, 320, 640, 800, 800]


def test_growth_first_window_and_caps() -> None:
    assert (
        StreamOptions(
            window_chars=100, overlap_chars=10, first_window_chars=30, window_growth=1.0
        ).window_sizes(3)
        == [30] * 3
    )
    assert StreamOptions(window_chars=100, overlap_chars=10, first_window_chars=None).window_sizes(2) == [
        100,
        100,
    ]
    # a first window larger than the largest is capped (old configs with small windows keep working)
    assert StreamOptions(window_chars=10, overlap_chars=2).window_sizes(2) == [10, 10]
    # slow growth still grows by at least one character per window
    assert StreamOptions(
        window_chars=5, overlap_chars=0, first_window_chars=1, window_growth=1.01
    ).window_sizes(6) == [1, 2, 3, 4, 5, 5]
    assert StreamOptions(window_chars=1000, first_window_chars=10, window_growth=3).window_sizes(4) == [
        10,
        30,
        90,
        270,
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window_growth": 0.5},
        {"window_growth": True},
        {"window_growth": float("nan")},
        {"window_growth": "2"},
        {"max_pending_windows": 0},
        {"max_pending_windows": 65},
        {"max_pending_windows": True},
        {"first_window_chars": 0},
        {"window_chars": 100, "overlap_chars": 100},
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        StreamOptions(**kwargs)  # type: ignore[arg-type]


def test_buffer_cuts_growing_windows_with_overlap() -> None:
    opts = StreamOptions(window_chars=40, overlap_chars=5, first_window_chars=10)
    buf: HoldbackBuffer[int] = HoldbackBuffer(opts)
    text = "".join(chr(ord("a") + i % 26) for i in range(100))
    windows = []
    for i in range(0, 100, 5):
        window = buf.push(i, text[i : i + 5])
        if window is not None:
            windows.append(window)
    last = buf.flush()
    assert last is not None
    windows.append(last)
    assert [len(w.new_text) for w in windows] == [10, 20, 40, 30]
    assert "".join(w.new_text for w in windows) == text  # every character released exactly once
    assert windows[0].context_chars == 0 and windows[0].text == text[:10]
    assert windows[1].text == text[5:30]  # five characters of the previous window judged again
    assert [c for w in windows for c in w.chunks] == list(range(0, 100, 5))


def test_buffer_releases_textless_chunks_with_the_rest() -> None:
    buf: HoldbackBuffer[str] = HoldbackBuffer(StreamOptions(window_chars=10, overlap_chars=0))
    assert buf.push("meta", "") is None
    last = buf.flush()
    assert last is not None and last.chunks == ["meta"] and last.text == ""
    assert buf.flush() is None


def test_refusal_starts_a_paragraph_after_released_text() -> None:
    assert refusal_after("", "No.") == "No."
    assert refusal_after("lf", "No.") == "\n\nNo."
    assert refusal_after("d.", "No.") == "\n\nNo."
    assert refusal_after("e ", "No.") == "\n\nNo."
    assert refusal_after(".\n", "No.") == "\nNo."
    assert refusal_after("\n\n", "No.") == "No."
