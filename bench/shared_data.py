"""Where the benches read the project's shared data sets: ``$S2S_SHARED_DATA``, else
``../shared/data`` beside this checkout (see that folder's README)."""

import os
from pathlib import Path

SHARED_DATA = Path(os.environ.get("S2S_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
