"""Small Hugging Face tokenizer folders trained here, for tests and examples of LLM packages.

``byte_level_bpe_folder(folder, texts, style)`` trains a byte-level BPE with the ``tokenizers``
library using the pre-tokenization of the released tokenizers (``"qwen2"``: Qwen2 / Qwen2.5,
``"llama3"``: Llama 3), adds their special tokens and writes ``tokenizer.json``,
``tokenizer_config.json`` (with a chat template in the model's style) and
``special_tokens_map.json``, as the released folders lay them out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from tokenizers.models import BPE

from ..folder import SPECIAL_TOKENS_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE

# The released tokenizer.json pre_tokenizer Split patterns.
QWEN2_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
LLAMA3_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

# Qwen2.5-Instruct's template (ChatML, a default system message, tools).
QWEN25_TEMPLATE = (
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, "
    "\\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
    "assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n            {{- '\\n' + message.content }}\n        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"
)

# Llama-3.1-Instruct's shape: bos, header ids, a dated system header (strftime_now), trimmed content.
LLAMA3_TEMPLATE = (
    "{{- bos_token }}\n{%- if not date_string is defined %}\n    {%- if strftime_now is defined %}\n"
    "        {%- set date_string = strftime_now(\"%d %b %Y\") %}\n    {%- else %}\n"
    "        {%- set date_string = \"26 Jul 2024\" %}\n    {%- endif %}\n{%- endif %}\n"
    "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content']|trim %}\n"
    "    {%- set messages = messages[1:] %}\n{%- else %}\n    {%- set system_message = \"\" %}\n{%- endif %}\n"
    "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
    "{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n"
    "{{- system_message }}\n{{- \"<|eot_id|>\" }}\n{%- for message in messages %}\n"
    "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}\n"
    "{%- endfor %}\n{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n"
)

STYLES = {
    "qwen2": {
        "pattern": QWEN2_PATTERN,
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "config": {
            "tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>", "unk_token": None, "add_prefix_space": False, "errors": "replace",
            "clean_up_tokenization_spaces": False, "model_max_length": 131072, "split_special_tokens": False,
            "chat_template": QWEN25_TEMPLATE,
        },
    },
    "llama3": {
        "pattern": LLAMA3_PATTERN,
        "specials": [
            "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|start_header_id|>",
            "<|end_header_id|>", "<|eot_id|>",
        ],
        "config": {
            "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
            "eos_token": "<|eot_id|>", "clean_up_tokenization_spaces": True, "model_max_length": 131072,
            "model_input_names": ["input_ids", "attention_mask"], "chat_template": LLAMA3_TEMPLATE,
        },
    },
}  # fmt: skip


def byte_level_bpe(texts: Iterable[str], style: str, vocab_size: int = 2000) -> Tokenizer:
    """A byte-level BPE trained on ``texts`` with the ``style`` model's tokenizer.json settings."""
    if style not in STYLES:
        raise ValueError(f"style={style!r} is not one of {', '.join(STYLES)}")
    spec = STYLES[style]
    llama = style == "llama3"
    engine = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False, ignore_merges=llama))
    if not llama:
        engine.normalizer = normalizers.NFC()
    engine.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(spec["pattern"]), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=llama, use_regex=False),
    ])  # fmt: skip
    engine.decoder = decoders.ByteLevel(add_prefix_space=llama, trim_offsets=llama, use_regex=llama)
    byte_level = processors.ByteLevel(add_prefix_space=llama, trim_offsets=False, use_regex=llama)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=1, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    engine.train_from_iterator(texts, trainer)
    engine.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in spec["specials"]])
    if llama:
        bos = spec["specials"][0]
        template = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1", special_tokens=[(bos, engine.token_to_id(bos))]
        )
        engine.post_processor = processors.Sequence([byte_level, template])
    else:
        engine.post_processor = byte_level
    return engine


def byte_level_bpe_folder(
    folder: str | os.PathLike, texts: Iterable[str], style: str = "qwen2", vocab_size: int = 2000
) -> Path:
    """Write a ``style`` tokenizer folder trained on ``texts`` (see the module docstring)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    engine = byte_level_bpe(texts, style, vocab_size)
    engine.save(str(folder / TOKENIZER_FILE))
    spec = STYLES[style]
    config = {
        **spec["config"],
        "added_tokens_decoder": {
            str(engine.token_to_id(t)): {
                "content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                "special": True,
            }  # fmt: skip
            for t in spec["specials"]
        },
    }
    (folder / TOKENIZER_CONFIG_FILE).write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
    roles = {k: v for k, v in spec["config"].items() if k.endswith("_token") and v is not None}
    (folder / SPECIAL_TOKENS_FILE).write_text(json.dumps(roles, indent=2), encoding="utf-8")
    return folder
