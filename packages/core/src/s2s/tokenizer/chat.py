"""Chat templates rendered as transformers renders them.

A template is Jinja source from a tokenizer folder (``tokenizer_config.json``'s
``chat_template``, or ``chat_template.jinja``). It runs in jinja2's
``ImmutableSandboxedEnvironment`` with ``trim_blocks`` and ``lstrip_blocks``, the loop
controls extension and ``{% generation %}`` blocks, the globals ``raise_exception``,
``strftime_now``, ``dict`` and ``namespace``, and transformers' ``tojson`` filter (no HTML
escaping, ``ensure_ascii=False``). The variables are ``messages``, ``add_generation_prompt``,
``tools``, ``documents``, the special tokens (``bos_token``, ``eos_token`` …) and any extra
keyword. jinja2 is the optional extra ``s2s-core[chat]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from functools import cache

KNOWN_ROLES = ("system", "user", "assistant", "tool")


class ChatTemplateError(ValueError):
    """A chat template that cannot render the messages; the message names the template's source."""


class ChatTemplate:
    """One template's Jinja source and where it came from (``source``, for errors); a config's
    list of named templates keeps them all and renders ``default`` (``tool_use`` with tools)."""

    def __init__(self, text: str, source: str, named: Mapping[str, str] | None = None, from_file: bool = False):
        self.source_text, self.source, self.from_file = text, source, from_file
        self.named = dict(named or {})

    @classmethod
    def from_config(cls, value, source: str) -> ChatTemplate:
        """From a ``tokenizer_config.json`` value: a string, or ``[{"name", "template"}, …]``."""
        if isinstance(value, str):
            return cls(value, source)
        try:
            named = {entry["name"]: entry["template"] for entry in value}
        except (TypeError, KeyError):
            raise ChatTemplateError(
                f"{source} must be a string or a list of {{'name': ..., 'template': ...}} objects"
            ) from None
        if "default" not in named:
            raise ChatTemplateError(f"{source} lists templates {sorted(named)} but none named 'default'")
        return cls(named["default"], source, named)

    @property
    def marks_generation(self) -> bool:
        """Whether the template wraps assistant text in ``{% generation %}`` blocks."""
        return re.search(r"\{%-?\s*generation\s*-?%\}", self.source_text) is not None

    @property
    def config_value(self):
        """What ``tokenizer_config.json`` holds for it."""
        if self.named:
            return [{"name": name, "template": text} for name, text in self.named.items()]
        return self.source_text

    def render(
        self,
        messages: Sequence[Mapping],
        *,
        add_generation_prompt: bool = False,
        tools: Sequence[Mapping] | None = None,
        documents: Sequence[Mapping] | None = None,
        special_tokens: Mapping[str, str] = {},  # noqa: B006 - read only
        with_spans: bool = False,
        **extra,
    ) -> tuple[str, list[tuple[int, int]]]:
        """The rendered text and the character spans of its ``{% generation %}`` blocks (empty
        unless ``with_spans``)."""
        messages = _check_messages(messages, self.source)
        text = self.named.get("tool_use", self.source_text) if tools and self.named else self.source_text
        variables = {
            **special_tokens, **extra, "messages": messages, "tools": tools, "documents": documents,
            "add_generation_prompt": add_generation_prompt,
        }  # fmt: skip
        blocks: list[str] = []
        spans: list[tuple[int, int]] = []
        jinja2 = _jinja2()
        try:
            template = _compile(text)
            if with_spans:
                with template.environment.track_generation(blocks, spans):
                    blocks.extend(template.generate(**variables))
            else:
                blocks.append(template.render(**variables))
        except jinja2.TemplateError as error:
            raise ChatTemplateError(f"chat template {self.source}: {error}") from None
        except (TypeError, AttributeError, KeyError, ValueError) as error:
            raise ChatTemplateError(
                f"chat template {self.source} cannot render these messages ({type(error).__name__}: "
                f"{error}){_hint(messages)}"
            ) from None
        rendered = "".join(blocks)
        for index, message in enumerate(messages):
            content = message.get("content")
            if isinstance(content, (list, dict)) and str(content) in rendered:
                raise ChatTemplateError(
                    f"chat template {self.source} wrote messages[{index}]'s {type(content).__name__} "
                    "content out as Python text: this template takes string content, pass a string"
                )
            if message.get("role") not in KNOWN_ROLES and isinstance(content, str) and content.strip() not in rendered:
                raise ChatTemplateError(
                    f"chat template {self.source} drops messages[{index}]: its role "
                    f"{message.get('role')!r} is not one the template renders (it knows roles such "
                    f"as {', '.join(KNOWN_ROLES)})"
                )
        return rendered, spans


def _check_messages(messages, source: str) -> list[dict]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of {{'role': ..., 'content': ...}} dicts, got {type(messages).__name__}")
    if not messages:
        raise ValueError("messages is empty: a chat needs at least one message")
    checked = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise TypeError(f"messages[{index}] must be a dict with 'role' and 'content', got {type(message).__name__}")
        if not isinstance(message.get("role"), str):
            raise ChatTemplateError(f"messages[{index}] has no string 'role' (got {message.get('role')!r})")
        checked.append({k: v for k, v in message.items() if v is not None})  # as transformers: None = absent
    return checked


def _hint(messages: list[dict]) -> str:
    odd = [
        f"messages[{i}] has {type(m['content']).__name__} content"
        for i, m in enumerate(messages)
        if "content" in m and not isinstance(m["content"], str)
    ]
    return f"; {odd[0]}: this template takes string content" if odd else ""


def _jinja2():
    try:
        import jinja2
        import jinja2.ext
        import jinja2.sandbox
    except ImportError:
        raise ImportError('chat templates need jinja2: pip install "s2s-core[chat]"') from None
    return jinja2


@cache
def _compile(text: str):
    """The compiled template (cached per source text)."""
    jinja2 = _jinja2()
    Extension, loopcontrols = jinja2.ext.Extension, jinja2.ext.loopcontrols
    ImmutableSandboxedEnvironment = jinja2.sandbox.ImmutableSandboxedEnvironment

    class GenerationBlocks(Extension):
        """``{% generation %}…{% endgeneration %}``: records the character span of each block."""

        tags = {"generation"}

        def __init__(self, environment):
            super().__init__(environment)
            self._tracking = ContextVar("generation_spans", default=None)
            environment.extend(track_generation=self.track)

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_block"), [], [], body).set_lineno(lineno)

        def _block(self, caller):
            text = caller()
            tracking = self._tracking.get()
            if tracking is not None:
                blocks, spans = tracking
                start = len("".join(blocks))
                spans.append((start, start + len(text)))
            return text

        @contextmanager
        def track(self, blocks: list[str], spans: list[tuple[int, int]]):
            token = self._tracking.set((blocks, spans))
            try:
                yield
            finally:
                self._tracking.reset(token)

    class Namespace(jinja2.utils.Namespace):
        """``namespace()`` that refuses underscore names, as transformers' sandbox does."""

        def __init__(*args, **kwargs):
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                Namespace._check(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            Namespace._check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(f"a chat template cannot set {name!r} on a namespace")

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlocks, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(
        raise_exception=raise_exception,
        strftime_now=lambda format: datetime.now().strftime(format),
        dict=lambda *args, **kwargs: dict(*args, **kwargs),
        namespace=Namespace,
    )
    return env.from_string(text)
