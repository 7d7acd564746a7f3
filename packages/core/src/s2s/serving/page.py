"""The page of ``s2s serve`` (``GET /``): a form (type inputs, see the predictions), or a chat
for chat models."""

from __future__ import annotations

import html
import json

HINTS = {
    "text": "one text per line",
    "pair": "one pair per line: text_a, a tab (or |||), text_b",
    "history": "one dialogue per line, turns separated by |||",
    "json": "one JSON value per line",
}

HEAD = """<!doctype html>
<html lang="zh">
<head>
<meta charset="utf-8">
<title>s2s · {title}</title>
<style>
  body {{ font-family: system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; padding: 0 1rem; }}
  {style}
</style>
</head>
"""
FORM_STYLE = """textarea { width: 100%; font-size: 1rem; }
  pre { background: #f4f4f4; padding: 1rem; white-space: pre-wrap; }"""
CHAT_STYLE = """#log div { margin: .5rem 0; white-space: pre-wrap; }
  .user { text-align: right; color: #124; }
  .assistant { background: #f4f4f4; padding: .5rem; }
  input { font-size: 1rem; }
  #message { width: 75%; }"""

PAGE = """<body>
<h1>{task}</h1>
<form id="form">
  <label for="inputs">Inputs ({hint})</label>
  <textarea id="inputs" name="inputs" rows="6"></textarea>
  <button id="submit" type="submit">Predict</button>
</form>
<pre id="outputs" aria-live="polite"></pre>
<script>
const KIND = "{kind}";
function parse(line) {{
  if (KIND === "json") return JSON.parse(line);
  if (KIND === "pair") return line.includes("\\t") ? line.split("\\t", 2) : line.split("|||", 2).map(s => s.trim());
  if (KIND === "history") return line.split("|||").map(s => s.trim());
  return line;
}}
document.getElementById("form").addEventListener("submit", async (event) => {{
  event.preventDefault();
  const out = document.getElementById("outputs");
  const lines = document.getElementById("inputs").value.split("\\n").filter(l => l.trim());
  out.textContent = "…";
  try {{
    const response = await fetch("/predict", {{
      method: "POST", headers: {{"Content-Type": "application/json"}},
      body: JSON.stringify({{inputs: lines.map(parse)}}),
    }});
    const data = await response.json();
    out.textContent = response.ok
      ? data.outputs.map((o, i) => lines[i] + "  →  " + JSON.stringify(o)).join("\\n")
      : "error " + response.status + ": " + data.detail;
    out.dataset.done = "true";
  }} catch (error) {{
    out.textContent = "error: " + error;
  }}
}});
</script>
</body>
</html>
"""


def render_page(task: str, kind: str) -> str:
    head = HEAD.format(title=html.escape(task), style=FORM_STYLE)
    return head + PAGE.format(task=html.escape(task), kind=kind, hint=html.escape(HINTS[kind]))


CHAT_PAGE = """<body>
<h1>{name}</h1>
<div id="log" aria-live="polite"></div>
<form id="form">
  <input id="message" autocomplete="off" placeholder="message">
  <button id="send" type="submit">Send</button>
  <input id="key" type="password" placeholder="API key" {key_hidden}>
</form>
<script>
const MODEL = {model};
const messages = [];
const log = document.getElementById("log");
function bubble(role, text) {{
  const div = document.createElement("div");
  div.className = role;
  div.textContent = text;
  log.appendChild(div);
  return div;
}}
document.getElementById("form").addEventListener("submit", async (event) => {{
  event.preventDefault();
  const box = document.getElementById("message");
  const text = box.value.trim();
  if (!text) return;
  box.value = "";
  messages.push({{role: "user", content: text}});
  bubble("user", text);
  const reply = bubble("assistant", "");
  reply.dataset.done = "false";
  const headers = {{"Content-Type": "application/json"}};
  const key = document.getElementById("key").value;
  if (key) headers["Authorization"] = "Bearer " + key;
  const response = await fetch("/v1/chat/completions", {{method: "POST", headers,
    body: JSON.stringify({{model: MODEL, messages, stream: true, temperature: 0}})}});
  if (!response.ok) {{
    reply.textContent = "error " + response.status + ": " + (await response.json()).error.message;
    messages.pop();
    reply.dataset.done = "true";
    return;
  }}
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {{
    const {{value, done}} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {{stream: true}});
    const events = buffer.split("\\n\\n");
    buffer = events.pop();
    for (const line of events) {{
      if (!line.startsWith("data: {{")) continue;
      const chunk = JSON.parse(line.slice(6));
      for (const choice of chunk.choices || []) reply.textContent += choice.delta.content || "";
    }}
  }}
  messages.push({{role: "assistant", content: reply.textContent}});
  reply.dataset.done = "true";
}});
</script>
</body>
</html>
"""


def render_chat_page(name: str, needs_key: bool) -> str:
    """A chat with the model served as ``name``: replies streamed from ``/v1/chat/completions``,
    the conversation kept in the page."""
    head = HEAD.format(title=html.escape(name), style=CHAT_STYLE)
    return head + CHAT_PAGE.format(name=html.escape(name), model=json.dumps(name), key_hidden="" if needs_key else "hidden")
