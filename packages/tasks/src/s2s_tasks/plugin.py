"""Registers this package's tasks with s2s."""

from s2s import hookimpl


@hookimpl
def register_tasks(register):
    pass
