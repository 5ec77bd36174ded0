"""One registry of converters and runtimes, fed by entry points; the built-ins register like any plug-in.

Entry-point groups: `edgeport.converters` (a Converter subclass) and `edgeport.runtimes` (a Runtime subclass).
Loading a plug-in imports only its module; plug-ins import their heavy libraries when used.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from edgeport.contracts import Converter, Runtime
from edgeport.data import TargetSpec
from edgeport.errors import UsageError

CONVERTER_GROUP = "edgeport.converters"
RUNTIME_GROUP = "edgeport.runtimes"


@dataclass(frozen=True)
class Registration:
    name: str
    origin: str  # "module:attr" of the entry point, or "registered in code"


class Registry:
    def __init__(self):
        self._converters: dict[str, Converter] = {}
        self._runtimes: dict[str, Runtime] = {}
        self._origins: dict[tuple[str, str], str] = {}
        self._errors: dict[tuple[str, str], str] = {}
        self._loaded = False

    def _load_entry_points(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for group, kind in ((CONVERTER_GROUP, "converter"), (RUNTIME_GROUP, "runtime")):
            for entry in metadata.entry_points(group=group):
                try:
                    plugin = entry.load()
                except Exception as exc:  # noqa: BLE001 - a broken plug-in must not break the others
                    self._errors[(kind, entry.name)] = f"{entry.value}: {type(exc).__name__}: {exc}"
                    continue
                self._add(kind, entry.name, plugin, origin=entry.value, override=False)

    def _add(self, kind: str, name: str, plugin, *, origin: str, override: bool) -> None:
        table = self._converters if kind == "converter" else self._runtimes
        instance = plugin() if isinstance(plugin, type) else plugin
        if name in table and not override:
            if self._origins.get((kind, name)) == origin:
                return
            raise UsageError(
                f"{kind} {name!r} is registered twice ({self._origins[(kind, name)]} and {origin}); "
                "uninstall one of the plug-ins"
            )
        table[name] = instance
        self._origins[(kind, name)] = origin

    def register_converter(self, converter, *, override: bool = False) -> None:
        self._load_entry_points()
        self._add("converter", converter.name, converter, origin="registered in code", override=override)

    def register_runtime(self, runtime, *, override: bool = False) -> None:
        self._load_entry_points()
        self._add("runtime", runtime.name, runtime, origin="registered in code", override=override)

    def converters(self) -> dict[str, Converter]:
        self._load_entry_points()
        return dict(sorted(self._converters.items()))

    def runtimes(self) -> dict[str, Runtime]:
        self._load_entry_points()
        return dict(sorted(self._runtimes.items()))

    def broken(self) -> dict[tuple[str, str], str]:
        self._load_entry_points()
        return dict(self._errors)

    def origin(self, kind: str, name: str) -> str:
        return self._origins.get((kind, name), "")

    def known_targets(self) -> list[str]:
        names: list[str] = []
        for name, converter in self.converters().items():
            names.extend(f"{name}:{v}" if v else name for v in converter.variants)
        return names

    def _refuse_broken(self, kind: str, name: str) -> None:
        """A name that is a plug-in which failed to load is that failure, not an unknown name."""
        error = self.broken().get((kind, name))
        if error:
            raise UsageError(
                f"the {kind} plug-in {name!r} is installed but failed to load ({error.splitlines()[0][:200]}); "
                "fix or reinstall the package that provides it"
            )

    def converter(self, name: str) -> Converter:
        converters = self.converters()
        if name not in converters:
            self._refuse_broken("converter", name)
            raise UsageError(f"unknown converter {name!r}; known targets: {', '.join(self.known_targets())}")
        return converters[name]

    def runtime(self, name: str) -> Runtime:
        runtimes = self.runtimes()
        if name not in runtimes:
            self._refuse_broken("runtime", name)
            raise UsageError(f"unknown runtime {name!r}; known runtimes: {', '.join(runtimes)}")
        return runtimes[name]

    def resolve(self, spec: TargetSpec) -> tuple[Converter, Runtime]:
        """Validate a target spec: its converter, its variant, its runtime."""
        converters = self.converters()
        if spec.converter not in converters:
            self._refuse_broken("converter", spec.converter)
            raise UsageError(f"unknown target {spec.name!r}; known targets: {', '.join(self.known_targets())}")
        converter = converters[spec.converter]
        if spec.variant not in converter.variants:
            known = ", ".join(f"{spec.converter}:{v}" if v else spec.converter for v in converter.variants)
            raise UsageError(
                f"unknown target {spec.name!r}: {spec.converter} has no variant {spec.variant!r}; use one of {known}"
            )
        runtime_name = spec.runtime or converter.default_runtime
        return converter, self.runtime(runtime_name)


_REGISTRY: Registry | None = None


def registry() -> Registry:
    global _REGISTRY  # noqa: PLW0603 - one registry per process
    if _REGISTRY is None:
        _REGISTRY = Registry()
    return _REGISTRY
