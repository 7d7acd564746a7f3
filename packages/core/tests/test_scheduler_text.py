"""The scheduler's text events: a streaming decode (whole characters, each token decoded once
in a small window, not the whole sequence again), and stop strings found across pieces."""

from __future__ import annotations

from s2s.generation.scheduler import Generation, GenerationRequest, SamplingParams
from s2s.tokenizer.streaming import DecodeStream

PIECES = [b"\xe5", b"\xa4", b"\xa9", b"\xe6\xb0", b"\x94", b"!"]  # 天 气 split over tokens, then !
EOS = 99


def decode(ids, skip_special_tokens=True) -> str:
    return b"".join(PIECES[i] for i in ids).decode("utf-8", errors="replace")


def run(tokens, decode=decode, **params):
    events = []
    request = GenerationRequest(inputs=None, prompt_ids=[], eos_ids=[EOS])
    generation = Generation(request, SamplingParams(**{"max_new_tokens": 10, **params}), events.append,
                            DecodeStream(decode, {EOS}))
    for token in tokens:
        generation.add(token)
        if generation.finish_reason:
            break
    return events


def test_pieces_are_whole_characters_joining_to_the_text():
    events = run([*range(len(PIECES)), EOS])
    texts = [e.text for e in events]
    assert not any("\ufffd" in t for t in texts)
    assert "".join(texts) == "天气!" and [t for t in texts if t] == ["天", "气", "!"]
    assert events[-1].finish_reason == "stop"


def test_a_character_cut_by_the_length_limit_ends_the_text_as_decode_gives_it():
    events = run([0, 1, 2, 3], max_new_tokens=4)  # 天, then the first two bytes of 气
    assert "".join(e.text for e in events) == decode([0, 1, 2, 3]) == "天\ufffd"
    assert events[-1].finish_reason == "length"


LETTERS = "abcdefgh"


def letters(ids, skip_special_tokens=True) -> str:
    return "".join(LETTERS[i] for i in ids if i != EOS)


def test_a_stop_string_across_pieces_ends_the_text_before_it_and_is_never_sent():
    events = run([0, 1, 2, 3, 4], letters, stop=("bcd", "zz"))  # a b c d: "bcd" spans three tokens
    assert [e.text for e in events] == ["a", "", "", ""]  # b and c held back: they might begin "bcd"
    assert events[-1].finish_reason == "stop"
    events = run([0, 1, 2, 4, 5], letters, stop=("bcd",), max_new_tokens=5)  # "bc" then e: sent
    assert "".join(e.text for e in events) == "abcef" and events[-1].finish_reason == "length"


def test_each_token_is_decoded_in_a_window_not_the_whole_sequence():
    decoded = []

    def counting(ids, skip_special_tokens=True):
        decoded.append(len(ids))
        return letters(ids)

    tokens = [i % len(LETTERS) for i in range(400)]
    events = run(tokens, counting, max_new_tokens=400)
    assert "".join(e.text for e in events) == letters(tokens)
    assert sum(decoded) < 6 * len(tokens), sum(decoded)  # the whole text each time: 80,000 ids
