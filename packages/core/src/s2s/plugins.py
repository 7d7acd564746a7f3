"""Loading plugins and filling the registries.

Plugins are found through the ``s2s`` entry-point group. ``S2S_LOAD_PLUGINS`` is an
allow-list of entry-point names (unset: all installed; empty: none). A plugin whose import
or registration raises is recorded in :func:`broken_plugins` and logged; the rest of s2s
keeps working. An implementation of a hook that has no spec fails loudly.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from dataclasses import dataclass
from importlib import metadata

import pluggy

from . import hookspecs
from .registry import BackboneEntry, Registry, RegistryError, TaskEntry

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "s2s"
# s2s-core's own plugins, registered before the installed ones: (plugin name, module). Named,
# not imported here, so that they may import this module (as llm loads its default plugins).
DEFAULT_PLUGINS = (("s2s.builtin", "s2s.builtin_plugin"),)


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    error: str | None = None


class PluginLoadError(RuntimeError):
    """A plugin that implements a hook s2s does not know."""


def allowed_plugins() -> set[str] | None:
    """Names allowed by ``S2S_LOAD_PLUGINS``; ``None`` when the variable is unset."""
    value = os.environ.get("S2S_LOAD_PLUGINS")
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


class Plugins:
    """The plugin manager plus what each plugin registered."""

    def __init__(self):
        self.manager = pluggy.PluginManager("s2s")
        self.manager.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        self.backbones = Registry("backbone")
        self.tasks = Registry("task")
        self.commands: dict[str, list[str]] = {}

    def load(self) -> None:
        for name, module in DEFAULT_PLUGINS:
            self._register(importlib.import_module(module), PluginInfo(name, "s2s-core", _version("s2s-core")))
        allowed = allowed_plugins()
        entry_points = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
        for entry_point in entry_points:
            if allowed is not None and entry_point.name not in allowed:
                continue
            dist = entry_point.dist.name if entry_point.dist else "?"
            version = entry_point.dist.version if entry_point.dist else "?"
            info = PluginInfo(entry_point.name, dist, version)
            try:
                module = entry_point.load()
            except Exception as exc:  # a broken plugin must not break s2s
                self._mark_broken(info, f"import failed: {type(exc).__name__}: {exc}")
                continue
            self._register(module, info)
        self._fill(self.backbones, "register_backbones", _backbone_register)
        self._fill(self.tasks, "register_tasks", _task_register)

    def _register(self, plugin, info: PluginInfo) -> None:
        if self.manager.is_registered(plugin):
            return
        self.manager.register(plugin, name=info.name)
        self.info[info.name] = info
        try:
            self.manager.check_pending()
        except pluggy.PluginValidationError as exc:
            self.manager.unregister(plugin)
            raise PluginLoadError(
                f"plugin {info.name!r} ({info.distribution} {info.version}) implements a hook "
                f"s2s does not define: {exc}. Known hooks: {', '.join(hook_names())}"
            ) from exc

    def _mark_broken(self, info: PluginInfo, error: str) -> None:
        logger.warning("s2s plugin %r (%s) is not loaded: %s", info.name, info.distribution, error)
        self.info[info.name] = PluginInfo(info.name, info.distribution, info.version, error)

    def _impls(self, hook_name: str):
        """Implementations of ``hook_name`` in the order their plugins loaded."""
        order = list(self.info)
        impls = getattr(self.manager.hook, hook_name).get_hookimpls()
        return sorted(impls, key=lambda impl: order.index(impl.plugin_name))

    def _fill(self, registry: Registry, hook_name: str, make_register) -> None:
        for impl in self._impls(hook_name):
            info = self.info[impl.plugin_name]
            if info.error:
                continue
            try:
                impl.function(register=make_register(registry, impl.plugin_name))
            except Exception as exc:
                self._mark_broken(info, f"{hook_name} failed: {type(exc).__name__}: {exc}")

    def add_commands(self, subparsers) -> None:
        """Let every plugin add its subcommands, recording which plugin added which."""
        for impl in self._impls("register_commands"):
            if self.info[impl.plugin_name].error:
                continue
            before = set(subparsers.choices)
            try:
                impl.function(subparsers=subparsers)
            except Exception as exc:
                self._mark_broken(
                    self.info[impl.plugin_name],
                    f"register_commands failed: {type(exc).__name__}: {exc}",
                )
            self.commands[impl.plugin_name] = sorted(set(subparsers.choices) - before)

    def registered_by(self, plugin_name: str) -> dict[str, list[str]]:
        """Names each registry holds from ``plugin_name``."""
        return {
            registry.kind: [e.name for e in registry.entries() if e.provider == plugin_name]
            for registry in (self.backbones, self.tasks)
        } | {"command": self.commands.get(plugin_name, [])}


def _backbone_register(registry: Registry, provider: str):
    def register(name, cls, *, sizes=None, aliases=(), default_size=None, **defaults):
        from .backbone import contract_violations

        problems = contract_violations(cls)
        if problems:
            raise RegistryError(
                f"backbone {name!r} ({getattr(cls, '__qualname__', cls)!s}) does not fulfil the "
                f"backbone contract of s2s.backbone: {'; '.join(problems)}"
            )
        sizes = dict(sizes or {})
        if default_size is None and "base" in sizes:
            default_size = "base"
        registry.add(
            BackboneEntry(name, cls, provider, sizes, defaults, default_size), aliases=aliases
        )

    return register


def _task_register(registry: Registry, provider: str):
    def register(name, cls, *, aliases=()):
        registry.add(TaskEntry(name, cls, provider), aliases=aliases)

    return register


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def hook_names() -> list[str]:
    return sorted(
        name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "s2s_spec")
    )


@functools.cache
def get_plugins() -> Plugins:
    """The process-wide plugins, loaded on first use."""
    plugins = Plugins()
    plugins.load()
    return plugins


def reset_plugins() -> None:
    """Forget loaded plugins so the next :func:`get_plugins` loads them again (tests)."""
    get_plugins.cache_clear()


def get_backbone(name: str):
    """The :class:`~s2s.registry.BackboneEntry` for ``name`` and a size parsed from it."""
    return get_plugins().backbones.resolve(name)


def get_task(name: str):
    return get_plugins().tasks.get(name)
