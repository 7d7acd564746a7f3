"""Running the ``s2s`` command line as a user does, for the cross-package tests."""

from __future__ import annotations

import os
import subprocess
import sys


def s2s(*args, plugins: str = "bert,gpt2,tasks", env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    """``python -m s2s ARGS`` in a fresh process with only ``plugins`` loaded (``S2S_LOAD_PLUGINS``),
    one OpenMP thread and ``env`` over the environment; with ``check``, a non-zero exit fails the
    test with the command and the end of its stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "S2S_LOAD_PLUGINS": plugins, **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "s2s", *map(str, args)], capture_output=True, text=True, timeout=600, env=env
    )
    if check:
        assert result.returncode == 0, f"s2s {' '.join(map(str, args))}\n{result.stderr[-3000:]}"
    return result
