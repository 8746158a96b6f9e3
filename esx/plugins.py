"""The plugin manager and the component registry.

Every component, built-in or not, comes from a plugin registered under the
``esx`` entry-point group. Two environment variables keep runs hermetic:

- ``ESX_DISABLE_PLUGIN_AUTOLOAD=1`` loads only the plugins that ship with esx;
- ``ESX_LOAD_PLUGINS=name,name`` loads the built-ins plus only the named
  third-party plugins (entry-point or distribution names).

A plugin that fails to import, or registers a name another plugin already
took, is recorded in :attr:`Registry.broken` with its package named; esx still
starts, and the failure surfaces when a recipe needs that plugin and in
``esx plugins``. Registration is atomic per plugin: when any of a plugin's
registrations is refused, none of its components is registered.

A plugin may register a class, or the class's import path as a string
(``"package.module:Class"``): the module is then imported when a recipe first
uses the component, so ``esx --help`` and ``esx plugins`` start without
importing torch.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

import pluggy

from esx import hookspecs
from esx.errors import DuplicateComponentError, PluginLoadError, UnknownComponentError
from esx.hookspecs import FAMILIES

BUILTIN_DISTRIBUTION = "esx"


#: ``"package.module:Class"`` (a lazily imported registration)
IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


@dataclass
class Entry:
    """One registered component: its class, or the import path of its class (resolved,
    checked and cached on first use of :attr:`cls`)."""

    family: str
    name: str
    target: Any
    plugin: str
    package: str
    version: str = ""

    @property
    def cls(self) -> Any:
        """The component's class (importing its module if it was registered by path)."""
        if isinstance(self.target, str):
            self.target = _checked(self, _import(self))
        return self.target

    @property
    def source(self) -> str:
        """``package version``, for messages and provenance."""
        return f"{self.package} {self.version}".strip()


@dataclass
class Registry:
    """Components by family and name, plus the plugins that failed to load."""

    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {f: {} for f in FAMILIES})
    broken: list[dict[str, str]] = field(default_factory=list)
    plugins: list[dict[str, str]] = field(default_factory=list)
    #: ``register_commands`` implementations: (plugin, package, function)
    commands: list[tuple[str, str, Any]] = field(default_factory=list)
    #: names registered twice: (family, name) -> the refused registrations' sources
    clashes: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def entry(self, family: str, name: str) -> Entry:
        self.get(family, name)  # the helpful error for unknown names
        return self.entries[family][name]

    def clash_note(self, family: str, name: str) -> str | None:
        """Which of the registrations of a clashing name is used, and why; None if no clash."""
        refused = self.clashes.get((family, name))
        if not refused:
            return None
        kept = self.entries[family][name]
        return (
            f"{family} {name!r} is registered by more than one plugin: using the one from "
            f"{kept.source} (plugin {kept.plugin!r}), not {', '.join(refused)}, because the "
            "first plugin loaded keeps a name (esx's own first, then entry points by name); "
            "uninstall or rename the other to silence this"
        )

    def add_commands(self, app: Any) -> None:
        """Let every plugin's ``register_commands`` add its commands to ``app``;
        a plugin whose hook fails is recorded in :attr:`broken`."""
        for plugin, package, fn in self.commands:
            try:
                fn(app)
            except Exception as exc:  # a broken third-party plugin must not kill esx
                self.broken.append(
                    {
                        "plugin": plugin,
                        "package": package,
                        "error": f"register_commands failed: {type(exc).__name__}: {exc}",
                    }
                )

    def get(self, family: str, name: str) -> Any:
        """The class registered as ``name`` in ``family``.

        Raises:
            UnknownComponentError: listing the known names and the closest one.
        """
        if family not in self.entries:
            raise UnknownComponentError("family", family, self.entries)
        try:
            return self.entries[family][name].cls
        except KeyError:
            err = UnknownComponentError(family, name, self.entries[family])
            if self.broken:
                names = ", ".join(b["plugin"] for b in self.broken)
                err.args = (f"{err.args[0]} (plugins that failed to load: {names})",)
            raise err from None

    def names(self, family: str) -> list[str]:
        return sorted(self.entries[family])

    def add(
        self, family: str, name: str, cls: Any, plugin: str, package: str, version: str = ""
    ) -> None:
        """Register one component (see :meth:`add_all` for a plugin's set, atomically)."""
        self.add_all([(family, name, cls)], plugin, package, version)

    def add_all(
        self, items: list[tuple[str, str, Any]], plugin: str, package: str, version: str = ""
    ) -> None:
        """Register a plugin's components: all of them, or (on a refusal) none.

        Raises:
            DuplicateComponentError: a name is already taken, or given twice here.
            PluginLoadError: a registration is neither a subclass of its family's base
                class nor an import path ``"package.module:Class"``.
        """
        staged: dict[tuple[str, str], Entry] = {}
        for family, name, target in items:
            have = self.entries[family].get(name) or staged.get((family, name))
            if have is not None:
                source = f"{package} {version}".strip() + f" (plugin {plugin!r})"
                self.clashes.setdefault((family, name), []).append(source)
                raise DuplicateComponentError(
                    f"{family} {name!r} is registered twice: by plugin {have.plugin!r} "
                    f"(package {have.package}) and by plugin {plugin!r} (package {package}); "
                    "rename one of them or uninstall one plugin. Nothing of plugin "
                    f"{plugin!r} is registered"
                )
            entry = Entry(family, name, target, plugin, package, version)
            if not (isinstance(target, str) and IMPORT_PATH.fullmatch(target)):
                _checked(entry, target)
            staged[family, name] = entry
        for (family, name), entry in staged.items():
            self.entries[family][name] = entry

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready listing (what ``esx plugins --json`` prints)."""
        return {
            "components": {
                fam: [
                    {"name": e.name, "plugin": e.plugin, "package": e.package, "version": e.version}
                    for e in sorted(d.values(), key=lambda e: e.name)
                ]
                for fam, d in self.entries.items()
            },
            "plugins": self.plugins,
            "broken": self.broken,
        }


def components_markdown(reg: Registry) -> str:
    """A Markdown table of every registered component, written from the code itself: the
    first line of its module's docstring and the first sentence of its class docstring
    (what README.md shows; ``esx plugins --markdown`` prints it)."""
    import sys

    def first(text: str | None, sep: str) -> str:
        return " ".join((text or "").strip().split(sep)[0].split())

    lines = ["| family | name | what it is | package |", "| --- | --- | --- | --- |"]
    for family, entries in reg.entries.items():
        for e in sorted(entries.values(), key=lambda e: e.name):
            module = sys.modules[e.cls.__module__]
            what = f"{first(module.__doc__, chr(10))} {first(e.cls.__doc__, chr(10) * 2)}"
            top = e.cls.__module__.split(".")[0]
            what = what.replace("|", "\\|")  # a literal pipe inside a table cell
            lines.append(f"| {family} | `{e.name}` | {what} | {e.package} (`{top}`) |")
    return "\n".join(lines) + "\n"


def _import(entry: Entry) -> Any:
    """The class an import path names; a failure names the plugin and its package."""
    module, _, qualname = entry.target.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise PluginLoadError(
            f"plugin {entry.plugin!r} (package {entry.package}) registered {entry.family} "
            f"{entry.name!r} as {entry.target!r}, which does not import: "
            f"{type(exc).__name__}: {exc}; reinstall or fix that package"
        ) from exc
    return obj


def _checked(entry: Entry, cls: Any) -> Any:
    """``cls``, once it is known to be a subclass of the family's base (and stamped with
    the component's name and provenance)."""
    base = _bases()[entry.family]
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginLoadError(
            f"plugin {entry.plugin!r} (package {entry.package}) registered {cls!r} as "
            f"{entry.family} {entry.name!r}, but a {entry.family} must be a subclass of "
            f"esx.interfaces.{base.__name__} (or its import path, 'package.module:Class')"
        )
    cls.component_family, cls.component_name = entry.family, entry.name
    cls.component_package, cls.component_version = entry.package, entry.version
    return cls


def _bases() -> dict[str, type]:
    from esx import interfaces as i

    return {
        "backbone": i.Backbone,
        "explainer": i.Explainer,
        "aggregator": i.Aggregator,
        "loss": i.Loss,
        "dataset": i.Dataset,
    }


def _dist(ep: Any) -> str:
    return ep.dist.name if ep.dist is not None else ""


def _selected(ep: Any, only: set[str] | None, no_autoload: bool) -> bool:
    dist = _dist(ep)
    if dist == BUILTIN_DISTRIBUTION:
        return True
    if no_autoload:
        return False
    return only is None or ep.name in only or dist in only


def build_registry(modules: list[ModuleType | Any] | None = None) -> Registry:
    """Load plugins and collect their components.

    Args:
        modules: load exactly these plugin objects instead of entry points
            (for tests and embedding). Each is registered under its module name.
    """
    pm = pluggy.PluginManager("esx")
    pm.add_hookspecs(hookspecs)
    reg = Registry()
    packages: dict[str, str] = {}
    versions: dict[str, str] = {}
    if modules is not None:
        for mod in modules:
            name = getattr(mod, "__name__", repr(mod))
            pm.register(mod, name=name)
            packages[name] = name.split(".")[0]
    else:
        only_env = os.environ.get("ESX_LOAD_PLUGINS")
        only = {s.strip() for s in only_env.split(",") if s.strip()} if only_env else None
        no_auto = os.environ.get("ESX_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0")
        # esx's own plugins first, then the others by entry-point name: the first plugin to
        # register a name keeps it, so a third-party plugin never shadows a built-in.
        eps = entry_points(group="esx")
        for ep in sorted(eps, key=lambda e: (_dist(e) != BUILTIN_DISTRIBUTION, e.name)):
            if not _selected(ep, only, no_auto):
                continue
            dist = _dist(ep) or "?"
            try:
                mod = ep.load()
                pm.register(mod, name=ep.name)
            except Exception as exc:  # a broken third-party plugin must not kill esx
                reg.broken.append(
                    {"plugin": ep.name, "package": dist, "error": f"{type(exc).__name__}: {exc}"}
                )
                continue
            packages[ep.name] = dist
            versions[ep.name] = ep.dist.version if ep.dist is not None else ""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginLoadError(f"a plugin implements a hook esx does not define: {exc}") from exc

    for plugin_name, plugin in pm.list_name_plugin():
        module = getattr(plugin, "__name__", plugin_name)
        reg.plugins.append(
            {"plugin": plugin_name, "package": packages.get(plugin_name, "?"), "module": module}
        )
        _register(
            reg, pm, plugin_name, packages.get(plugin_name, "?"), versions.get(plugin_name, "")
        )
    for impl in pm.hook.register_commands.get_hookimpls():
        reg.commands.append((impl.plugin_name, packages.get(impl.plugin_name, "?"), impl.function))
    return reg


def _register(reg: Registry, pm: Any, plugin: str, package: str, version: str) -> None:
    """Collect one plugin's components from its hooks and add them, all or none; a
    refusal or a failing hook marks the plugin broken."""
    items: list[tuple[str, str, Any]] = []
    hook = ""
    try:
        for family, hook in FAMILIES.items():
            for impl in getattr(pm.hook, hook).get_hookimpls():
                if impl.plugin_name == plugin:
                    impl.function(lambda n, c, f=family: items.append((f, n, c)))
        reg.add_all(items, plugin, package, version)
    except (DuplicateComponentError, PluginLoadError) as exc:
        reg.broken.append({"plugin": plugin, "package": package, "error": str(exc)})
    except Exception as exc:
        reg.broken.append(
            {
                "plugin": plugin,
                "package": package,
                "error": f"{hook} failed: {type(exc).__name__}: {exc}",
            }
        )


_REGISTRY: Registry | None = None


def registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = build_registry()
    return _REGISTRY
