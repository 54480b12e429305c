"""
The reference pages, generated from the code at every build so they cannot drift.

MkDocs runs this as a hook (``hooks:`` in mkdocs.yml): `on_files` adds the pages under
``reference/`` without writing them to disk. ``tests/test_docs_reference.py`` imports the same
functions to check that every config key, hook and command is documented.
"""

from __future__ import annotations

import html
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import msgspec

DOCS = Path(__file__).resolve().parent

# -- numpydoc -----------------------------------------------------------------------------------

_SECTION = re.compile(r"^([A-Z][A-Za-z ]+)\n-{3,}[ \t]*$", re.M)


@dataclass
class Item:
    """One entry of a numpydoc section: ``name : type`` and its description."""

    name: str
    type: str
    desc: str


@dataclass
class Doc:
    """A parsed numpydoc docstring."""

    summary: str = ""
    extended: str = ""
    sections: dict[str, list[Item]] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)

    def params(self) -> dict[str, Item]:
        """Return the Parameters section by name."""
        return {i.name: i for i in self.sections.get("Parameters", [])}


def _items(body: str, named: bool) -> list[Item]:
    items: list[Item] = []
    for line in body.splitlines():
        if line and not line[0].isspace():
            name, sep, type_ = line.partition(" : ")
            if not named or (not sep and " " not in line.strip()):
                name, type_ = (line.strip(), "") if named else ("", line.strip())
            items.append(Item(name.strip(), type_.strip(), ""))
        elif items:
            items[-1].desc += line.strip() + "\n" if line.strip() else "\n"
    for item in items:
        item.desc = re.sub(r"(?<!\n)\n(?!\n)", " ", item.desc.strip())
    return items


def parse_doc(obj: Any) -> Doc:
    """
    Parse the numpydoc docstring of `obj` (or a docstring given as text).

    Parameters
    ----------
    obj : Any
        A documented object, or the docstring itself.

    Returns
    -------
    Doc

    """
    raw = obj if isinstance(obj, str) else (obj.__doc__ or "")
    text = inspect.cleandoc(raw)
    parts = _SECTION.split(text)
    head = parts[0].strip()
    summary, _, extended = head.partition("\n\n")
    doc = Doc(" ".join(summary.split()), extended.strip())
    for title, body in zip(parts[1::2], parts[2::2], strict=True):
        body = body.strip("\n")
        if title in ("Parameters", "Other Parameters", "Attributes"):
            doc.sections[title] = _items(body, named=True)
        elif title in ("Returns", "Yields", "Raises", "Warns"):
            doc.sections[title] = _items(body, named=False)
        else:
            doc.text[title] = inspect.cleandoc(body)
    return doc


def md(text: str) -> str:
    """Turn reST inline markup of docstrings into Markdown (``x`` and `x` to code)."""
    return re.sub(r"``(.+?)``", r"`\1`", text)


def cell(text: str) -> str:
    """Make text safe for a Markdown table cell (a pipe would split it)."""
    text = md(text).replace("\n", " ")
    if "|" not in text:
        return text
    return re.sub(r"`([^`]+)`", lambda m: f"<code>{html.escape(m.group(1))}</code>", text).replace(
        "|", "&#124;"
    )


# -- config structs -----------------------------------------------------------------------------


@dataclass
class Key:
    """One config key: where it sits, its type, default and meaning."""

    path: str
    type: str
    default: str
    desc: str
    owner: type


def _annotations(cls: type) -> dict[str, str]:
    out: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        for name, ann in vars(base).get("__annotations__", {}).items():
            out[name] = ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))
    return out


def _descriptions(cls: type) -> dict[str, str]:
    out: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if "__doc__" in vars(base) and base.__doc__:
            out.update({k: v.desc for k, v in parse_doc(base).params().items()})
    return out


def toml_value(value: Any) -> str:
    """Return `value` as TOML would write it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def nested_structs(type_: Any) -> list[type]:
    """Return the msgspec struct classes a field type holds (``X | None``, ``list[X]``)."""
    if isinstance(type_, type) and issubclass(type_, msgspec.Struct):
        return [type_]
    if isinstance(type_, types.UnionType) or typing.get_origin(type_) is not None:
        return [s for arg in typing.get_args(type_) for s in nested_structs(arg)]
    return []


def struct_keys(cls: type, prefix: str = "", skip: set[str] | None = None) -> list[Key]:
    """
    Return the keys of a config struct, with the keys of nested structs as ``a.b``.

    Parameters
    ----------
    cls : type
        A msgspec struct.
    prefix : str, default ""
        Put before every key name.
    skip : set[str], optional
        Field names to leave out (the keys every source shares, on a plugin's table).

    Returns
    -------
    list[Key]

    """
    annotations, descriptions = _annotations(cls), _descriptions(cls)
    keys: list[Key] = []
    for f in msgspec.structs.fields(cls):
        if skip and f.name in skip:
            continue
        if f.default is not msgspec.NODEFAULT:
            default = "unset" if f.default is None else toml_value(f.default)
        elif f.default_factory is not msgspec.NODEFAULT:
            default = toml_value(f.default_factory())
        else:
            default = "required"
        path = prefix + f.name
        keys.append(
            Key(path, annotations.get(f.name, ""), default, descriptions.get(f.name, ""), cls)
        )
        for sub in nested_structs(f.type):
            if sub.__name__ not in ("BarRequestConfig", "SourceConfig"):
                keys.extend(struct_keys(sub, prefix=path + "."))
    return keys


def builtin_sources() -> list[tuple[str, type]]:
    """Return ``(plugin name, source class)`` of every built-in plugin, from the registry."""
    from nautilus_backfill.registry import build_registry

    registry = build_registry(entry_points=False)
    if registry.broken:
        raise RuntimeError(f"built-in plugins failed to load: {registry.broken}")
    return [(name, registry.entries[name].source_type) for name in registry.names()]


def config_tables() -> list[tuple[str, str, list[Key]]]:
    """Return ``(heading, intro, keys)`` for each TOML table, core first, then each plugin."""
    from nautilus_backfill.config import BackfillConfig, BarRequestConfig, SourceConfig

    common = {f.name for f in msgspec.structs.fields(SourceConfig)}
    tables = [
        ("[backfill]", BackfillConfig, struct_keys(BackfillConfig)),
        ("[[backfill.requests]]", BarRequestConfig, struct_keys(BarRequestConfig)),
        ("[[backfill.sources]]: every source", SourceConfig, struct_keys(SourceConfig)),
    ]
    for name, source in builtin_sources():
        cfg = source.config_type
        tables.append((f'plugin = "{name}"', cfg, struct_keys(cfg, skip=common)))
    return [(h, parse_doc(cls).summary, keys) for h, cls, keys in tables]


def config_page() -> str:
    """Return the configuration reference page."""
    out = [
        "# Configuration reference",
        "",
        "Generated from the config structs (`nautilus_backfill.config` and each built-in "
        "plugin's config class) at every docs build. A key `a.b` is the key `b` of the table "
        '`a`: `columns = { timestamp = "Time" }`. Unknown keys are refused with their path.',
        "",
    ]
    for heading, intro, keys in config_tables():
        out += [f"## `{heading}`", "", md(intro), ""]
        name = heading.partition('"')[2].rstrip('"')
        if name and (DOCS / "sources" / f"{name}.md").is_file():
            out += [f"How to use it: [the {name} page](../sources/{name}.md).", ""]
        if not keys:
            out += ["No keys beyond the ones every source has.", ""]
            continue
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for k in keys:
            plain = k.default in ("required", "unset")
            default = k.default if plain else f"`{k.default}`"
            type_ = f"<code>{html.escape(k.type)}</code>".replace("|", "&#124;")
            out.append(f"| `{k.path}` | {type_} | {cell(default)} | {cell(k.desc)} |")
        out.append("")
    return "\n".join(out)


# -- command line -------------------------------------------------------------------------------


def commands() -> Iterator[tuple[str, click.Command, click.Context]]:
    """Yield ``(full name, command, context)`` for the CLI group and every command under it."""
    from nautilus_backfill.cli import main

    def walk(cmd: click.Command, ctx: click.Context) -> Iterator[tuple[str, click.Command, Any]]:
        yield ctx.command_path, cmd, ctx
        if isinstance(cmd, click.Group):
            for name in sorted(cmd.commands):
                sub = cmd.commands[name]
                yield from walk(sub, click.Context(sub, info_name=name, parent=ctx))

    root = click.Context(main, info_name="nautilus-backfill", terminal_width=100)
    yield from walk(main, root)


def cli_page() -> str:
    """Return the command-line reference page: each command's ``--help``, as the user sees it."""
    out = [
        "# Command line",
        "",
        "Generated from the click commands in `nautilus_backfill.cli` at every docs build: "
        "each section is the command's `--help`. Exit codes: 0 ok, 1 a request came up short "
        'with `on_insufficient = "fail"` (or `store verify` found a problem), 2 an invalid '
        "config or command line.",
        "",
    ]
    for path, cmd, ctx in commands():
        out += [f"## `{path}`", "", md(inspect.cleandoc(cmd.help or "")), ""]
        out += ["```text", f"$ {path} --help", cmd.get_help(ctx), "```", ""]
    return "\n".join(out)


# -- Python API and hooks -----------------------------------------------------------------------


def signature(fn: Callable[..., Any], name: str | None = None, skip_self: bool = False) -> str:
    """Return the signature as written in the source (annotations unevaluated)."""
    sig = inspect.signature(fn)
    parts = []
    for p in sig.parameters.values():
        if skip_self and p.name in ("self", "cls"):
            continue
        text = p.name
        if p.kind is p.VAR_POSITIONAL:
            text = "*" + text
        elif p.kind is p.VAR_KEYWORD:
            text = "**" + text
        if p.annotation is not p.empty:
            ann = p.annotation if isinstance(p.annotation, str) else p.annotation.__name__
            text += f": {ann}"
        if p.default is not p.empty:
            text += f" = {p.default!r}" if p.annotation is not p.empty else f"={p.default!r}"
        parts.append(text)
    result = f"{name or fn.__name__}({', '.join(parts)})"
    ret = sig.return_annotation
    if ret is not sig.empty:
        result += f" -> {ret if isinstance(ret, str) else getattr(ret, '__name__', ret)}"
    return result


def render_doc(doc: Doc, level: int) -> list[str]:
    """Render a parsed docstring as Markdown under a heading of `level`."""
    out = [md(doc.summary), ""]
    if doc.extended:
        out += [md(doc.extended), ""]
    labels = {"Parameters": "name", "Returns": "type", "Raises": "exception"}
    for title in ("Parameters", "Returns", "Raises"):
        items = doc.sections.get(title)
        if not items:
            continue
        out += [f"**{title}**", ""]
        if title == "Parameters":
            out += ["| name | type | meaning |", "|---|---|---|"]
            for i in items:
                type_ = f"<code>{html.escape(i.type)}</code>".replace("|", "&#124;")
                out.append(f"| `{i.name}` | {type_} | {cell(i.desc)} |")
        else:
            out += [f"| {labels[title]} | meaning |", "|---|---|"]
            for i in items:
                type_ = f"<code>{html.escape(i.type)}</code>".replace("|", "&#124;")
                out.append(f"| {type_} | {cell(i.desc)} |")
        out.append("")
    for title, body in doc.text.items():
        out += [f"**{title}**", "", md(body), ""]
    return out


def hookspecs() -> list[Callable[..., Any]]:
    """Return the hook specifications, in source order."""
    from nautilus_backfill import hookspecs as module

    marker = f"{module.PROJECT}_spec"
    found = [f for f in vars(module).values() if inspect.isfunction(f) and hasattr(f, marker)]
    return sorted(found, key=lambda f: f.__code__.co_firstlineno)


SOURCE_METHODS = ("fetch", "check", "close")


def hooks_page() -> str:
    """Return the hooks page: every hook and every `BarSource` method a plugin implements."""
    from nautilus_backfill.source import BarSource

    out = [
        "# Hooks",
        "",
        "Generated from `nautilus_backfill.hookspecs` and `nautilus_backfill.source.BarSource` "
        "at every docs build. A plugin module implements hooks with `@hookimpl` "
        "(`from nautilus_backfill import hookimpl`); the names of the arguments must match, "
        "and a plugin may take fewer of them. See [Writing a source plugin](../plugins.md).",
        "",
        "## Plugin hooks",
        "",
    ]
    for fn in hookspecs():
        out += [f"### `{signature(fn)}`", "", *render_doc(parse_doc(fn), 3)]
    out += [
        "## Source methods",
        "",
        "A source is a `BarSource` subclass; it sets `config_type` (its `SourceConfig` "
        f"subclass) and `remote` (a network source: `{BarSource.remote!r}` by default), and "
        "overrides these methods.",
        "",
    ]
    for name in SOURCE_METHODS:
        fn = getattr(BarSource, name)
        out += [f"### `{signature(fn, skip_self=True)}`", "", *render_doc(parse_doc(fn), 3)]
    return "\n".join(out)


# Modules a plugin may import helpers from; their public functions are API.
HELPER_MODULES = (
    "nautilus_backfill.paths",
    "nautilus_backfill.timestamps",
    "nautilus_backfill.source",
    "nautilus_backfill.config",
    "nautilus_backfill.registry",
)


def api_objects() -> list[tuple[str, str, Any]]:
    """Return ``(module, name, object)`` for the package's ``__all__`` and the helper modules."""
    import importlib

    import nautilus_backfill

    out = [
        ("nautilus_backfill", n, getattr(nautilus_backfill, n)) for n in nautilus_backfill.__all__
    ]
    for modname in HELPER_MODULES:
        module = importlib.import_module(modname)
        for n, obj in vars(module).items():
            public = not n.startswith("_") and inspect.isfunction(obj)
            if public and obj.__module__ == modname and not any(o is obj for _, _, o in out):
                out.append((modname, n, obj))
    return out


def members(cls: type) -> list[tuple[str, Any]]:
    """Return the public methods and properties a class defines itself."""
    out = []
    for n, obj in vars(cls).items():
        if n.startswith("_"):
            continue
        if isinstance(obj, classmethod | staticmethod):
            obj = obj.__func__
        if inspect.isfunction(obj) or isinstance(obj, property):
            out.append((n, obj))
    return out


def api_page() -> str:
    """Return the Python API reference page."""
    import pyarrow as pa

    out = [
        "# Python API",
        "",
        "Generated from the numpydoc docstrings at every docs build: everything in "
        "`nautilus_backfill.__all__`, and the helpers a plugin may import from "
        + ", ".join(f"`{m}`" for m in HELPER_MODULES)
        + ". Config structs are in the [configuration reference](config.md), hooks in "
        "[Hooks](hooks.md).",
        "",
    ]
    current = None
    for modname, name, obj in api_objects():
        if modname != current:
            out += [f"## `{modname}`", ""]
            current = modname
        if isinstance(obj, pa.Schema):
            out += [f"### `{name}`", "", "The columns a source returns (`SourceResult.table`):", ""]
            out += ["| column | type |", "|---|---|"]
            out += [f"| `{f.name}` | `{f.type}` |" for f in obj]
            out.append("")
            continue
        if inspect.isclass(obj) and issubclass(obj, msgspec.Struct):
            out += [f"### `{name}`", "", md(parse_doc(obj).summary), ""]
            out += ["Keys: see the [configuration reference](config.md).", ""]
            continue
        if inspect.isclass(obj):
            init = obj.__init__ if "__init__" in vars(obj) else None
            head = signature(init, name, skip_self=True) if init else f"class {name}"
            if hasattr(obj, "__dataclass_fields__"):
                head = signature(obj, name)
            head = head.removesuffix(" -> None")
            out += [f"### `{head}`", "", *render_doc(parse_doc(obj), 3)]
            for mname, member in members(obj):
                if isinstance(member, property):
                    out += [f"#### `{name}.{mname}` (property)", ""]
                    out += render_doc(parse_doc(member.fget), 4)
                else:
                    sig = signature(member, f"{name}.{mname}", skip_self=True)
                    out += [f"#### `{sig}`", "", *render_doc(parse_doc(member), 4)]
            continue
        out += [f"### `{signature(obj, name)}`", "", *render_doc(parse_doc(obj), 3)]
    return "\n".join(out)


PAGES: dict[str, Callable[[], str]] = {
    "reference/config.md": config_page,
    "reference/cli.md": cli_page,
    "reference/api.md": api_page,
    "reference/hooks.md": hooks_page,
}


def on_files(files: Any, config: Any) -> Any:
    """MkDocs hook: add the generated reference pages to the site."""
    from mkdocs.structure.files import File

    for path, render in PAGES.items():
        files.append(File.generated(config, path, content=render()))
    return files
