"""Test, lint and benchmark sessions.

``nox -s tests`` tests every package alone in a fresh venv (core alone; core + one backbone;
core + bert + tasks), the third-party plugin template beside core alone, then everything
together. Sessions use uv, and every install goes through ``constraints.txt`` so torch
resolves to the pinned CPU build; uv's cache makes the repeated torch install cheap.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).parent
CONSTRAINTS = ("-c", str(ROOT / "constraints.txt"))
LOCAL_WHEELS = Path("/opt/wheels")  # where these machines keep the torch CPU wheel
TEST_DEPS = ("pytest>=7", "transformers>=4.40")
OPENAI = "openai>=1.40"  # the official client, for the tests of s2s serve's /v1 routes
PEFT = "peft>=0.13"  # LoRA parity (tests/test_lora_peft.py), a test-only dependency like transformers

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "tests", "nezha_transformers4", "browser"]
if LOCAL_WHEELS.is_dir():
    os.environ.setdefault("UV_FIND_LINKS", str(LOCAL_WHEELS))
# Let each fresh venv keep its bytecode: the CLI and server tests start ~30 Python processes that
# import torch, 3 s each when it is compiled anew (5.5 s against 2.7 s measured here).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

CORE = "packages/core"
BERT = "packages/models-bert"
GPT2 = "packages/models-gpt2"
T5 = "packages/models-t5"
BART = "packages/models-bart"
LLAMA = "packages/models-llama"
TASKS = "packages/tasks"
TEMPLATE = "examples/plugins/s2s-task-template"


def tests_importing(module: str, folder: str) -> list[str]:
    """Test files in ``folder`` with cases that skip unless ``module`` is importable."""
    return sorted(
        str(p) for p in Path(ROOT, folder).glob("test_*.py")
        if "importorskip(" in (text := p.read_text()) and f'"{module}"' in text
    )


# suite -> (packages installed, test folders run)
SUITES = {
    "core": ([f"{CORE}[hub,chat]"], [f"{CORE}/tests"]),
    "bert": ([CORE, BERT], [f"{BERT}/tests"]),
    "gpt2": ([CORE, GPT2], [f"{GPT2}/tests"]),
    # s2s-models-t5 brings jieba (s2s-core[jieba]): the word-level tokenizer tests run here.
    "t5": ([CORE, T5], [f"{T5}/tests", *sorted(map(str, Path(ROOT, CORE, "tests").glob("test_word_tokenizer*.py")))]),
    "bart": ([CORE, BART], [f"{BART}/tests"]),
    "llama": ([CORE, LLAMA], [f"{LLAMA}/tests"]),
    "tasks": ([f"{CORE}[onnx]", BERT, TASKS], [f"{TASKS}/tests"]),
    "template": ([CORE, TEMPLATE], [f"{TEMPLATE}/tests"]),
    # Together: the cross-package tests (the conformance suite: every task on every backbone, the
    # template's third-party task included), the task tests that skip without s2s-models-gpt2 or
    # s2s-models-llama (sft), and
    # model ids on both hubs' caches (modelscope only here: importing it takes ~10 s of CPU).
    "all": ([f"{CORE}[hub,modelscope,onnx,serve]", BERT, GPT2, BART, T5, LLAMA, TASKS, TEMPLATE, OPENAI, PEFT],
            ["tests", *sorted({*tests_importing("s2s_gpt2", f"{TASKS}/tests"), *tests_importing("s2s_llama", f"{TASKS}/tests")}),
             f"{T5}/tests/test_t5_seq2seq.py"]),
}


def install(session: nox.Session, *args: str) -> None:
    session.install(*CONSTRAINTS, *args)


@nox.session
@nox.parametrize("suite", list(SUITES))
def tests(session: nox.Session, suite: str) -> None:
    """Each package alone with only what it needs, then all packages together."""
    packages, folders = SUITES[suite]
    install(session, *TEST_DEPS, *packages)
    session.run("pytest", *session.posargs, *folders, env={"S2S_LOAD_PLUGINS": None})
    if suite == "template":
        check_template_discovery(session)
    if suite == "all":  # the CPU checks of bench/gpu_check.py (its CUDA ones need a GPU)
        session.run("python", "bench/gpu_check.py", "--device", "cpu", env={"S2S_LOAD_PLUGINS": None})


def check_template_discovery(session: nox.Session) -> None:
    """``s2s plugins`` lists the installed template; ``S2S_LOAD_PLUGINS=`` hides it."""
    listing = session.run("s2s", "plugins", silent=True, env={"S2S_LOAD_PLUGINS": None})
    if "task-template  (s2s-task-template 0.1.0)  tasks: text_regression" not in listing:
        session.error(f"s2s plugins does not list the template:\n{listing}")
    hidden = session.run("s2s", "plugins", silent=True, env={"S2S_LOAD_PLUGINS": ""})
    if "task-template" in hidden:
        session.error(f"S2S_LOAD_PLUGINS= did not hide the template:\n{hidden}")
    session.log("the template is discovered, listed and hidden by S2S_LOAD_PLUGINS=")


@nox.session
def browser(session: nox.Session) -> None:
    """The s2s serve page in headless Chromium (Debian's chromium, driven by Playwright over CDP)."""
    chromium = os.environ.get("S2S_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None and shutil.which("apt-get") and os.geteuid() == 0:
        session.run("apt-get", "update", "-qq", external=True, success_codes=range(256))
        session.run("apt-get", "install", "-y", "-qq", "chromium", external=True, success_codes=range(256))
        chromium = shutil.which("chromium")
    if chromium is None:
        session.skip("no Chromium, and it cannot be installed here: apt-get install chromium, or set S2S_CHROMIUM")
    install(session, "pytest>=7", "playwright>=1.40", f"{CORE}[serve]", BERT, GPT2, TASKS)
    session.run("pytest", "tests/browser", env={"S2S_LOAD_PLUGINS": None, "S2S_CHROMIUM": chromium})


@nox.session
def nezha_transformers4(session: nox.Session) -> None:
    """NEZHA against transformers 4.x's NezhaModel (removed in transformers 5)."""
    install(session, "pytest>=7", "transformers>=4.40,<5", CORE, BERT)
    session.run("pytest", f"{BERT}/tests/test_nezha_transformers4.py", env={"S2S_LOAD_PLUGINS": None})


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark against its peer, on ../shared/data (S2S_SHARED_DATA overrides)."""
    install(session, "transformers>=4.40", "accelerate>=1.1", "scikit-learn", f"{CORE}[serve]", BERT, GPT2, BART, TASKS)
    for script in sorted(Path(ROOT, "bench").glob("*.py")):
        if not script.name.endswith("_common.py"):  # shared readers, not a benchmark
            session.run("python", str(script))


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
