"""The scheduler's text events hold back a character split over byte-level tokens."""

from __future__ import annotations

from s2s.generation.scheduler import Generation, GenerationRequest, SamplingParams

PIECES = [b"\xe5", b"\xa4", b"\xa9", b"\xe6\xb0", b"\x94", b"!"]  # 天 气 split over tokens, then !


def decode(ids) -> str:
    return b"".join(PIECES[i] for i in ids).decode("utf-8", errors="replace")


def test_pieces_are_whole_characters_joining_to_the_text():
    events = []
    request = GenerationRequest(inputs=None, prompt_ids=[], eos_ids=[99])
    generation = Generation(request, SamplingParams(max_new_tokens=10), events.append, decode)
    for token in range(len(PIECES)):
        generation.add(token)
    generation.add(99)
    texts = [e.text for e in events]
    assert not any("\ufffd" in t for t in texts)
    assert "".join(texts) == "天气!" and [t for t in texts if t] == ["天", "气", "!"]
    assert events[-1].finish_reason == "stop"
