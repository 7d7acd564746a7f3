"""s2s-core's own plugin: the ``s2s plugins``, ``train``, ``predict``, ``serve``, ``chat`` and ``export`` commands."""

from __future__ import annotations

from .commands import chat, export, predict, serve, train
from .hookspecs import hookimpl
from .plugins import get_plugins


@hookimpl
def register_commands(subparsers):
    parser = subparsers.add_parser("plugins", help="list installed plugins and what they register")
    parser.set_defaults(func=_list_plugins)
    for command in (train, predict, serve, chat, export):
        command.add_parser(subparsers)


def _list_plugins(args) -> int:
    plugins = get_plugins()
    for info in plugins.info.values():
        line = f"{info.name}  ({info.distribution} {info.version})"
        if info.error:
            print(f"{line}  BROKEN: {info.error}")
            continue
        registered = plugins.registered_by(info.name)
        parts = [f"{kind}s: {', '.join(names)}" for kind, names in registered.items() if names]
        print(f"{line}  {'; '.join(parts) or 'registers nothing'}")
    return 0
