"""Chats as token ids for instruction tuning: rendered by a chat template, with the assistant
tokens marked.

The template is the tokenizer's own (``tokenizer_config.json``'s ``chat_template`` of a Qwen,
Llama or GLM folder), one given as the task option ``chat_template``, or else
:data:`DEFAULT_TEMPLATE`::

    {bos}系统：\\n{system}{eos}用户：\\n{question}{eos}助手：\\n{answer}{eos}用户：\\n…

where ``{bos}`` is the tokenizer's ``bos_token`` (else its ``cls_token``, else nothing) and
``{eos}`` its ``eos_token`` (else its ``sep_token``): ``[CLS] … [SEP]`` on a BERT vocabulary.
A prompt for a reply ends with ``助手：\\n``. Roles are followed by a newline so that a
byte-level BPE never merges the role's colon into the first token of the text after it.
Rendering is core's (:meth:`s2s.tokenizer.EngineTokenizer.apply_chat_template`, exactly as
transformers renders), so the template a task used is set on its tokenizer and the task saves
it with its options: ``predict`` and ``serve`` build prompts the same way.

The assistant tokens are those whose characters overlap an assistant turn's span in the
rendered text: the template's ``{% generation %}`` blocks where it has them, else each
assistant turn as found by rendering the chat up to it, through its end-of-turn token (the
special token after an answer: ``<|im_end|>``, ``<|eot_id|>``, ``[SEP]``; what a template
writes after it, as Qwen's newline, is never generated and not learnt).
"""

from __future__ import annotations

from collections.abc import Sequence

from s2s.tokenizer import ChatTemplate, ChatTemplateError

DEFAULT_TEMPLATE = (
    "{%- set end = eos_token if eos_token is defined else sep_token -%}"
    "{%- if bos_token is defined %}{{ bos_token }}{% elif cls_token is defined %}{{ cls_token }}{% endif -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' %}{{ '系统：\n' }}"
    "{%- elif message['role'] == 'user' %}{{ '用户：\n' }}"
    "{%- elif message['role'] == 'assistant' %}{{ '助手：\n' }}"
    "{%- else %}{{ raise_exception('the default template renders system, user and assistant turns, not ' + message['role']) }}"
    "{%- endif %}{{ message['content'] + end }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt %}{{ '助手：\n' }}{% endif -%}"
)
DEFAULT_SOURCE = "s2s_tasks.chat_format.DEFAULT_TEMPLATE"
OPTION_SOURCE = "the sft task's chat_template option"
DEFAULT_ROLE_TEXTS = ("系统：", "用户：", "助手：")  # in a vocab built from the data


class ChatFormat:
    """How one tokenizer turns chats into ids: ``template`` (Jinja source) when given, else
    the tokenizer's chat template, else :data:`DEFAULT_TEMPLATE`; the one chosen becomes the
    tokenizer's ``chat_template``. ``saved_template`` is what a saved folder must carry (the
    template when it is not the tokenizer's own, else ``None``)."""

    def __init__(self, tokenizer, template: str | None = None):
        self.tokenizer = tokenizer
        self.saved_template = None
        own = tokenizer.chat_template
        if own is not None and own.source in (DEFAULT_SOURCE, OPTION_SOURCE):  # set by an earlier task
            self.saved_template = own.source_text
        if template is not None or own is None:
            self.saved_template = DEFAULT_TEMPLATE if template is None else template
            source = DEFAULT_SOURCE if template is None else OPTION_SOURCE
            tokenizer.chat_template = ChatTemplate(self.saved_template, source)
        special = tokenizer.special_tokens_map
        if self.saved_template == DEFAULT_TEMPLATE and not ({"eos_token", "sep_token"} & special.keys()):
            raise ValueError(
                f"{tokenizer!r} has no chat template and neither an eos_token nor a sep_token for the "
                "default one to end turns with: give the task a chat_template, or a tokenizer with one"
            )
        self.stop_ids = self._stop_ids()

    def render(self, messages: Sequence[dict], add_generation_prompt: bool = False) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt, tokenize=False)

    def encode(self, messages: Sequence[dict]) -> tuple[list[int], list[int]]:
        """``(ids, assistant mask)`` of a chat; a ValueError when the template drops an assistant
        turn (its text is not in the rendered chat) or marks no assistant token."""
        self._check_answers_rendered(messages)
        try:
            out = self.tokenizer.apply_chat_template(messages, return_assistant_tokens_mask=True)
        except ChatTemplateError as exc:
            raise ValueError(str(exc)) from None
        ids, mask = out["input_ids"], self._ending_at_turn_ends(out["input_ids"], out["assistant_masks"])
        if not any(mask):
            raise ValueError(f"the chat template {self.source} marks no assistant token in this chat")
        return ids, mask

    def _ending_at_turn_ends(self, ids: list[int], mask: list[int]) -> list[int]:
        """``mask`` with each run of assistant tokens ended at its last end-of-turn token: what a
        template writes after it (Qwen's newline) is never generated, so never learnt."""
        mask, start = list(mask), 0
        while start < len(mask):
            end = start
            while end < len(mask) and mask[end]:
                end += 1
            stops = [i for i in range(start, end) if ids[i] in self.stop_ids]
            if stops:
                mask[stops[-1] + 1 : end] = [0] * (end - stops[-1] - 1)
            start = end + 1
        return mask

    def turn_stretches(self, messages: Sequence[dict], mask: Sequence[int]) -> list[tuple[int, int]]:
        """The ``(start, end)`` token range of each assistant turn of ``messages`` in the
        assistant ``mask`` that :meth:`encode` gave: its stretches of 1s, one per turn (a
        ValueError when the template marks them otherwise)."""
        stretches, start = [], None
        for index, value in enumerate([*mask, 0]):
            if value and start is None:
                start = index
            elif not value and start is not None:
                stretches.append((start, index))
                start = None
        turns = sum(m["role"] == "assistant" for m in messages)
        if len(stretches) != turns:
            raise ValueError(
                f"the chat template {self.source} marks {len(stretches)} stretches of assistant tokens for "
                f"{turns} assistant turns, so a per-turn weight cannot be placed: drop the weight keys, or "
                "use a template that marks each assistant turn in one piece"
            )
        return stretches

    def prompt(self, messages: Sequence[dict]) -> list[int]:
        """The ids of a prompt for the next assistant turn."""
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)

    @property
    def source(self) -> str:
        return self.tokenizer.chat_template.source

    def _check_answers_rendered(self, messages: Sequence[dict]) -> None:
        text, position = self.render(messages), 0
        for index, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            found = text.find(message["content"].strip(), position)
            if found < 0:
                raise ValueError(
                    f"the chat template {self.source} drops messages[{index}] (an assistant turn): its text "
                    f"is not in the rendered chat, so it cannot be trained on; fix the turn or the template"
                )
            position = found + len(message["content"].strip())

    def _stop_ids(self) -> list[int]:
        """The ids that end an assistant turn: the template's end-of-turn token (the special
        token right after an answer's text) and the tokenizer's ``eos_token`` (else ``sep_token``)."""
        ids = []
        probe = [{"role": "user", "content": "问"}, {"role": "assistant", "content": "答"}]
        try:
            before, full = self.render(probe[:1], add_generation_prompt=True), self.render(probe)
        except (ChatTemplateError, TypeError, ValueError):
            before = full = ""
        if full.startswith(before) and "答" in full[len(before) :]:
            tail = full[len(before) :].split("答", 1)[1]
            tokens = self.tokenizer.tokenize(tail) if tail.strip() else []
            if tokens and tokens[0] in self.tokenizer.special_tokens:
                ids.append(self.tokenizer.token_to_id(tokens[0]))
        special = self.tokenizer.special_tokens_map
        eos = special.get("eos_token", special.get("sep_token"))
        if eos is not None and self.tokenizer.token_to_id(eos) not in ids:
            ids.append(self.tokenizer.token_to_id(eos))
        if not ids:
            raise ValueError(
                f"the chat template {self.source} ends an assistant turn with no special token and "
                f"{self.tokenizer!r} has no eos_token or sep_token, so generation could not stop: use a template "
                "that ends turns with a special token"
            )
        return ids


def drop_oldest_turn(messages: list[dict]) -> list[dict] | None:
    """``messages`` without the oldest exchange (the first user turn and the turns up to the
    next user turn; system turns stay), or ``None`` when only one exchange is left."""
    system = [m for m in messages if m["role"] == "system"]
    rest = [m for m in messages if m["role"] != "system"]
    users = [i for i, m in enumerate(rest) if m["role"] == "user"]
    if len(users) < 2:
        return None
    return system + rest[users[1] :]


__all__ = ["DEFAULT_TEMPLATE", "ChatFormat", "drop_oldest_turn"]
