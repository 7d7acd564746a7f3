"""Hook specifications of the ``s2s`` plugin system.

A plugin is a module (or object) whose functions are marked with :data:`hookimpl` and
named after the specs below. Installed plugins are found through the ``s2s`` entry-point
group; ``S2S_LOAD_PLUGINS=a,b`` restricts which of them load.

Example ``pyproject.toml`` of a third-party plugin::

    [project.entry-points.s2s]
    my_task = "my_package.plugin"
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("s2s")
hookimpl = pluggy.HookimplMarker("s2s")


@hookspec
def register_backbones(register):
    """Register backbones: ``register(name, backbone_class, sizes=..., aliases=..., **defaults)``."""


@hookspec
def register_tasks(register):
    """Register tasks: ``register(name, task_class, aliases=...)``."""


@hookspec
def register_commands(subparsers):
    """Add subcommands to the ``s2s`` command: ``subparsers.add_parser(...)`` of argparse.

    Set ``func`` on the parser (``parser.set_defaults(func=...)``); it receives the parsed
    arguments and returns an exit status (``None`` means 0).
    """
