"""Command-line flags that come from the plug-ins: each converter's Options dataclass declares them.

A field made with `edgeport.contracts.option(..., flag="--io-type", help=...)` becomes a flag of `edgeport
convert`; every field is also settable with `-O KEY=VALUE`. The core knows no plug-in flag by name: they are
added when the command is parsed or its help shown (so `edgeport --help` loads no plug-in), and `--help`
lists them in one section per converter, third-party plug-ins included. A flag several converters declare
(`--io-type`) is one flag whose value goes to each selected target that takes it. Values stay text until
`build_options` coerces and checks them per converter, so every plug-in reports its own bad values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import click

PARAM_PREFIX = "plugin_option__"


@dataclass(frozen=True)
class PluginFlag:
    flag: str  # "--io-type"
    key: str  # the Options field name ("io_type")
    help: str
    boolean: bool
    default_true: bool  # a boolean that is on by default gets --flag/--no-flag
    choices: tuple[str, ...]
    converters: tuple[str, ...]


def declared_options(options_type: type) -> list[tuple[dataclasses.Field, dict[str, Any]]]:
    return [(f, dict(f.metadata.get("edgeport", {}))) for f in dataclasses.fields(options_type)]


def collect_flags(reserved: set[str]) -> tuple[list[PluginFlag], dict[str, list[tuple[str, str]]]]:
    """(flags, help rows per converter). `reserved`: flags the core already has; a plug-in cannot take them."""
    from edgeport.run.registry import registry  # only when `convert` is parsed

    flags: dict[str, PluginFlag] = {}
    rows: dict[str, list[tuple[str, str]]] = {}
    for name, converter in registry().converters().items():
        for field, meta in declared_options(converter.Options):
            flag = meta.get("flag")
            text = meta.get("help") or "(no help given)"
            boolean = str(field.type).startswith("bool")
            if flag and flag not in reserved:
                known = flags.get(flag)
                choices = tuple(dict.fromkeys([*(known.choices if known else ()), *meta.get("choices", ())]))
                flags[flag] = PluginFlag(
                    flag=flag,
                    key=field.name,
                    help=known.help if known else text,
                    boolean=boolean,
                    default_true=boolean and field.default is True,
                    choices=choices,
                    converters=(*(known.converters if known else ()), name),
                )
                shown = f"{flag}/--no-{flag[2:]}" if boolean and field.default is True else flag
                rows.setdefault(name, []).append((shown if boolean else f"{shown} {_metavar(meta, field)}", text))
            else:
                rows.setdefault(name, []).append((f"-O {field.name}={_metavar(meta, field)}", text))
    return list(flags.values()), rows


def _metavar(meta: dict[str, Any], field: dataclasses.Field) -> str:
    if meta.get("choices"):
        return "[" + "|".join(meta["choices"]) + "]"
    if str(field.type).startswith("bool"):
        return "true|false"
    return meta.get("metavar") or field.name.upper()


def click_option(flag: PluginFlag) -> click.Option:
    name = PARAM_PREFIX + flag.key
    if flag.boolean:
        declaration = f"{flag.flag}/--no-{flag.flag[2:]}" if flag.default_true else flag.flag
        return click.Option([declaration, name], is_flag=True, default=None, help=flag.help)
    kind = click.Choice(flag.choices) if flag.choices else click.STRING
    return click.Option([flag.flag, name], type=kind, default=None, help=flag.help)


def plugin_values(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the plug-in flags out of a command's keyword arguments: option key -> value, for flags given."""
    values = {}
    for key in [k for k in kwargs if k.startswith(PARAM_PREFIX)]:
        value = kwargs.pop(key)
        if value is not None:
            values[key[len(PARAM_PREFIX) :]] = value
    return values


class PluginOptionsCommand(click.Command):
    """A click command that adds the plug-ins' flags on first use and groups them by converter in --help."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._plugin_rows: dict[str, list[tuple[str, str]]] | None = None

    def _load_plugins(self) -> None:
        if self._plugin_rows is not None:
            return
        reserved = {opt for param in self.params for opt in (*param.opts, *param.secondary_opts)}
        flags, self._plugin_rows = collect_flags(reserved)
        self.params.extend(click_option(flag) for flag in flags)

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        self._load_plugins()
        return super().get_params(ctx)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._load_plugins()
        core = [
            record
            for param in self.get_params(ctx)
            if not (param.name or "").startswith(PARAM_PREFIX) and (record := param.get_help_record(ctx))
        ]
        with formatter.section("Options"):
            formatter.write_dl(core)
        for converter, rows in sorted((self._plugin_rows or {}).items()):
            with formatter.section(f"{converter} options (from the {converter} converter; also -O KEY=VALUE)"):
                formatter.write_dl(rows)
