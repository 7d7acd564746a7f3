"""Registers this package's backbones with s2s."""

from s2s import hookimpl


@hookimpl
def register_backbones(register):
    pass
