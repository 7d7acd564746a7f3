"""The one-page form of ``s2s serve`` (``GET /``): type inputs, see the predictions."""

from __future__ import annotations

import html

HINTS = {
    "text": "one text per line",
    "pair": "one pair per line: text_a, a tab (or |||), text_b",
    "history": "one dialogue per line, turns separated by |||",
    "json": "one JSON value per line",
}

PAGE = """<!doctype html>
<html lang="zh">
<head>
<meta charset="utf-8">
<title>s2s · {task}</title>
<style>
  body {{ font-family: system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; padding: 0 1rem; }}
  textarea {{ width: 100%; font-size: 1rem; }}
  pre {{ background: #f4f4f4; padding: 1rem; white-space: pre-wrap; }}
</style>
</head>
<body>
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
    return PAGE.format(task=html.escape(task), kind=kind, hint=html.escape(HINTS[kind]))
