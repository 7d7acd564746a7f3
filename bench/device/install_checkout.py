"""Install this checkout's packages in editable form where pip cannot: no network, no build backend.

A lent GPU machine has torch and transformers but neither, so ``pip install -e`` cannot run
there. Plugins are found through entry points, which live in an installed distribution's
metadata. This writes, into the running interpreter's site-packages (or ``--into`` another
site folder), each package's metadata (``METADATA`` and ``entry_points.txt``, from its
``pyproject.toml``) and one ``.pth`` file naming the source folders. Child processes (the
tests' ``python train.py``) then find the packages too, which a ``PYTHONPATH`` a test's own
environment replaces would not give.

    python3 bench/device/install_checkout.py [--into SITE_PACKAGES]     (Python 3.11+: tomllib)
"""

from __future__ import annotations

import argparse
import shutil
import site
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
PROJECTS = [*sorted(ROOT.glob("packages/*/pyproject.toml")), ROOT / "examples/plugins/s2s-task-template/pyproject.toml"]


def write_metadata(pyproject: Path, into: Path) -> None:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    folder = into / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n", encoding="utf-8")
    groups = project.get("entry-points", {})
    if "scripts" in project:
        groups = {**groups, "console_scripts": project["scripts"]}
    lines = [f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in points.items())
             for group, points in groups.items()]
    (folder / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--into", type=Path, default=Path(site.getsitepackages()[0]),
                        help="a site-packages folder (default: this interpreter's)")
    into = parser.parse_args().into.resolve()
    for pyproject in PROJECTS:
        write_metadata(pyproject, into)
    sources = "".join(f"{pyproject.parent / 'src'}\n" for pyproject in PROJECTS)
    (into / "s2s-checkout.pth").write_text(sources, encoding="utf-8")
    print(f"{len(PROJECTS)} packages of {ROOT} installed in editable form into {into}")


if __name__ == "__main__":
    main()
