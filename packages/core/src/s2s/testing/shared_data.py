"""Where the project's shared Chinese data sets are (``shared/data``, see its README), for the
tests, benches and examples of a checkout: ``$S2S_SHARED_DATA``, else ``shared/data`` beside the
checkout."""

from __future__ import annotations

import os
from pathlib import Path

VARIABLE = "S2S_SHARED_DATA"


def shared_data(start: str | os.PathLike) -> Path:
    """The shared data folder of the checkout holding ``start`` (a test's or script's
    ``__file__``): ``$S2S_SHARED_DATA``, else ``shared/data`` beside the checkout's root (the
    folder with ``noxfile.py``). It may not exist: callers skip, or say where they looked."""
    if os.environ.get(VARIABLE):
        return Path(os.environ[VARIABLE])
    here = Path(start).resolve()
    root = next((folder for folder in here.parents if (folder / "noxfile.py").is_file()), here.parent)
    return root.parent / "shared" / "data"
