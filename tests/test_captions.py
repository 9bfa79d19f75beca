"""WebVTT and SRT from finals (stream.captions): exact output for synthetic finals."""

import pytest

from stream.captions import CaptionConfig, Cue, cues, srt, timestamp, webvtt
from stream.events import Final, Word


def _final(index, words, start=None, end=None, text=None):
    ws = tuple(Word(t, s, e, 0.9) for t, s, e in words)
    return Final("call", "mono", f"call/mono/{index}", index, text if text is not None else " ".join(w.text for w in ws),
                 ws, start=ws[0].start if start is None else start, end=ws[-1].end if end is None else end)


SHORT = _final(0, [("hello", 0.5, 0.9), ("world", 1.0, 1.234)], start=0.3, end=1.5)
# 16 words of 6 characters, 0.3 s each: 12 fill two lines of 41 characters, the other 4 make a second cue.
LONG = _final(1, [(f"word{i:02d}", 2.0 + 0.3 * i, 2.25 + 0.3 * i) for i in range(16)])


@pytest.mark.parametrize("seconds,decimal,expected", [
    (1.234, ".", "00:00:01.234"),
    (1.234, ",", "00:00:01,234"),
    (3661.9996, ".", "01:01:02.000"),
    (0.0004, ",", "00:00:00,000"),
    (-0.2, ".", "00:00:00.000"),
    (360000.0, ".", "100:00:00.000"),
])
def test_timestamps(seconds, decimal, expected):
    assert timestamp(seconds, decimal) == expected


def test_webvtt_one_cue_per_final_and_long_finals_split_on_two_balanced_lines():
    assert webvtt(cues([LONG, SHORT])) == (
        "WEBVTT\n"
        "\n"
        "00:00:00.500 --> 00:00:01.234\n"
        "hello world\n"
        "\n"
        "00:00:02.000 --> 00:00:05.550\n"
        "word00 word01 word02 word03 word04 word05\n"
        "word06 word07 word08 word09 word10 word11\n"
        "\n"
        "00:00:05.600 --> 00:00:06.750\n"
        "word12 word13 word14 word15\n"
        "\n"
    )


def test_srt_numbers_its_cues_and_writes_a_decimal_comma():
    assert srt(cues([SHORT, LONG])) == (
        "1\n00:00:00,500 --> 00:00:01,234\nhello world\n\n"
        "2\n00:00:02,000 --> 00:00:05,550\nword00 word01 word02 word03 word04 word05\n"
        "word06 word07 word08 word09 word10 word11\n\n"
        "3\n00:00:05,600 --> 00:00:06,750\nword12 word13 word14 word15\n\n"
    )


def test_a_final_longer_than_the_cue_limit_is_split_by_time():
    slow = _final(0, [(w, 10.0 + 2 * i, 10.5 + 2 * i) for i, w in enumerate("a b c d e".split())])
    assert cues([slow]) == [Cue(10.0, 16.5, ("a b c d",)), Cue(18.0, 18.5, ("e",))]
    assert cues([slow], CaptionConfig(max_cue_s=30.0)) == [Cue(10.0, 18.5, ("a b c d e",))]


def test_lines_wrap_within_the_limit_and_a_longer_word_stands_alone():
    words = _final(0, [("aaaa", 0.0, 0.1), ("bbbb", 0.2, 0.3), ("cccccccccccc", 0.4, 0.5), ("dd", 0.6, 0.7)])
    assert cues([words], CaptionConfig(max_line_chars=10)) == [
        Cue(0.0, 0.5, ("aaaa bbbb", "cccccccccccc")), Cue(0.6, 0.7, ("dd",))]
    assert cues([words], CaptionConfig(max_line_chars=10, max_lines=3)) == [
        Cue(0.0, 0.7, ("aaaa bbbb", "cccccccccccc", "dd"))]


def test_webvtt_escapes_markup_and_srt_keeps_the_text():
    final = _final(0, [(w, 0.1 * i, 0.1 * i + 0.05) for i, w in enumerate(["a", "<b>", "&", "-->", "c"])])
    assert webvtt(cues([final])) == "WEBVTT\n\n00:00:00.000 --> 00:00:00.450\na &lt;b&gt; &amp; --&gt; c\n\n"
    assert srt(cues([final])) == "1\n00:00:00,000 --> 00:00:00,450\na <b> & --> c\n\n"


def test_finals_without_words_spread_their_text_and_empty_finals_give_no_cue():
    bare = Final("call", "mono", "call/mono/0", 0, "no timings here", (), start=2.0, end=3.5)
    empty = Final("call", "mono", "call/mono/1", 1, "", (), start=4.0, end=5.0)
    assert cues([bare, empty]) == [Cue(2.0, 3.5, ("no timings here",))]
    assert webvtt([]) == "WEBVTT\n\n" and srt([]) == ""
