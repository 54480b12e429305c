"""The generated reference: every config key, hook, command and public function documented.

The checks walk the same objects the docs build renders (docs/hooks.py), so a key, hook or
command added without docs fails here before it reaches the site. Each checker is also run
on an undocumented stand-in, to show it catches what it is meant to.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from nautilus_backfill import SourceConfig, hookspecs
from nautilus_backfill.registry import DEFAULT_PLUGINS, build_registry

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

_spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
ref = importlib.util.module_from_spec(_spec)
sys.modules["docs_hooks"] = ref  # dataclasses look their module up while defining classes
_spec.loader.exec_module(ref)


# -- checkers -----------------------------------------------------------------------------------


def undocumented_keys(tables) -> list[str]:
    return [
        f"{heading} {k.path} ({k.owner.__module__}.{k.owner.__qualname__})"
        for heading, _, keys in tables
        for k in keys
        if not k.desc.strip()
    ]


def hook_doc_problems(fn) -> list[str]:
    doc = ref.parse_doc(fn)
    name = fn.__name__
    problems = [] if doc.summary else [f"{name}: no summary line"]
    params = [p for p in inspect.signature(fn).parameters if p not in ("self", "cls")]
    documented = {k.lstrip("*"): v for k, v in doc.params().items()}  # numpydoc writes *args
    for p in params:
        item = documented.get(p)
        if item is None or not item.type or not item.desc:
            problems.append(f"{name}: parameter '{p}' has no type and description")
    problems += [
        f"{name}: documents '{p}', which it does not take" for p in documented if p not in params
    ]
    returns = inspect.signature(fn).return_annotation
    if returns not in ("None", None, inspect.Signature.empty) and "Returns" not in doc.sections:
        problems.append(f"{name}: no Returns section")
    return problems


def naming_tests(name: str, files: list[Path]) -> list[str]:
    """Return ``file::test`` for each test function whose body mentions `name`."""
    found = []
    for path in files:
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
                body = ast.get_source_segment(source, node) or ""
                if re.search(rf"\b{re.escape(name)}\b", body):
                    found.append(f"{path.name}::{node.name}")
    return found


def _test_files() -> list[Path]:
    return [p for p in sorted((ROOT / "tests").glob("test_*.py")) if p.name != Path(__file__).name]


def command_problems(path: str, cmd: click.Command) -> list[str]:
    problems = [] if (cmd.help or "").strip() else [f"{path}: no help text"]
    for p in cmd.params:
        if isinstance(p, click.Option) and p.name != "help" and not (p.help or "").strip():
            problems.append(f"{path} {p.opts[0]}: no help text")
        if isinstance(p, click.Argument) and p.human_readable_name not in (cmd.help or ""):
            problems.append(f"{path}: help does not say what {p.human_readable_name} is")
    return problems


# Nested column maps whose numpydoc Parameters sections their plugins' owners are adding
# (plugins/csv/config.py, plugins/parquet/config.py). Every other key must be documented.
PENDING = {"ParquetColumns"}


# -- config keys --------------------------------------------------------------------------------


def test_every_config_key_of_core_and_every_builtin_plugin_has_a_description():
    tables = ref.config_tables()
    plugins = {h for h, _, _ in tables if h.startswith("plugin = ")}
    registry = build_registry(entry_points=False)
    # Every built-in plugin's sources are in the reference, however many were added since.
    assert plugins == {f'plugin = "{n}"' for n in registry.names()}
    assert len(registry.names()) >= len(DEFAULT_PLUGINS)
    missing = undocumented_keys(tables)
    assert [k for k in missing if k.split(".")[-1].rstrip(")") not in PENDING] == []
    # A pending struct that got its Parameters section must leave the list.
    assert sorted(c for c in PENDING if not any(k.endswith(f".{c})") for k in missing)) == []


def test_a_key_without_a_description_is_caught():
    class Thing(SourceConfig, frozen=True, kw_only=True):
        """
        A source.

        Parameters
        ----------
        path : str
            Where.

        """

        path: str
        depth: int = 3

    keys = ref.struct_keys(Thing)
    assert [k.path for k in keys] == [
        "name",
        "plugin",
        "timeout",
        "strict",
        *[k.path for k in keys[4:]],
    ]
    assert [p.split()[1] for p in undocumented_keys([("t", "", keys)])] == ["depth"]


def test_config_reference_shows_type_default_and_meaning():
    page = ref.config_page()
    assert (
        '| `deadline` | <code>str</code> | `"60s"` | The time the whole backfill may take' in page
    )
    assert "| `bar_type` | <code>str</code> | required |" in page
    assert "| `columns.date` |" in page  # nested tables are flattened to a.b keys


# -- hooks --------------------------------------------------------------------------------------


def test_every_hook_is_documented_with_its_exact_signature():
    specs = ref.hookspecs()
    assert {f.__name__ for f in specs} >= {"register_sources", "validate_bars"}
    problems = [p for f in specs for p in hook_doc_problems(f)]
    assert problems == []
    page = ref.hooks_page()
    for f in specs:
        params = ", ".join(f"{n}: {a}" for n, a in f.__annotations__.items() if n != "return")
        assert f"### `{f.__name__}({params}) -> {f.__annotations__['return']}`" in page


def test_every_source_method_a_plugin_overrides_is_documented():
    from nautilus_backfill.source import BarSource

    assert [p for m in ref.SOURCE_METHODS for p in hook_doc_problems(getattr(BarSource, m))] == []
    assert "### `fetch(request: BarRequest, span: Span) -> SourceResult`" in ref.hooks_page()


def test_every_hook_is_named_in_a_test():
    files = _test_files()
    untested = [f.__name__ for f in ref.hookspecs() if not naming_tests(f.__name__, files)]
    assert untested == []


def test_an_undocumented_or_untested_hook_is_caught(tmp_path):
    def new_hook(request: str, extra: int) -> dict:
        """
        Do something.

        Parameters
        ----------
        request : str
            The request.

        """

    assert hook_doc_problems(new_hook) == [
        "new_hook: parameter 'extra' has no type and description",
        "new_hook: no Returns section",
    ]
    (tmp_path / "test_x.py").write_text(
        "def helper():\n    new_hook()\n\ndef test_a():\n    pass\n"
    )
    assert naming_tests("new_hook", [tmp_path / "test_x.py"]) == []
    (tmp_path / "test_x.py").write_text("def test_a():\n    new_hook()\n")
    assert naming_tests("new_hook", [tmp_path / "test_x.py"]) == ["test_x.py::test_a"]


def test_hookspecs_module_is_what_the_reference_reads():
    assert [f.__name__ for f in ref.hookspecs()] == [
        n for n, f in vars(hookspecs).items() if hasattr(f, f"{hookspecs.PROJECT}_spec")
    ]


# -- command line -------------------------------------------------------------------------------


def test_every_command_and_option_has_help():
    commands = list(ref.commands())
    names = {path for path, _, _ in commands}
    assert {
        "nautilus-backfill check",
        "nautilus-backfill fetch",
        "nautilus-backfill plugins",
    } <= names
    assert [p for path, cmd, _ in commands for p in command_problems(path, cmd)] == []


def test_a_command_without_help_is_caught():
    @click.command()
    @click.argument("config")
    @click.option("--fast", is_flag=True)
    def quiet(config, fast):
        pass

    assert command_problems("nb quiet", quiet) == [
        "nb quiet: no help text",
        "nb quiet: help does not say what CONFIG is",
        "nb quiet --fast: no help text",
    ]


def test_cli_reference_is_each_commands_real_help():
    from click.testing import CliRunner
    from nautilus_backfill.cli import main

    out = CliRunner().invoke(main, ["fetch", "--help"], terminal_width=100)
    assert out.exit_code == 0
    assert out.output.strip().replace("Usage: main", "Usage: nautilus-backfill") in ref.cli_page()


# -- Python API ---------------------------------------------------------------------------------


def test_every_public_function_and_method_is_documented():
    problems = []
    for modname, name, obj in ref.api_objects():
        if inspect.isfunction(obj):
            problems += [f"{modname}.{p}" for p in hook_doc_problems(obj)]
        elif inspect.isclass(obj):
            if not ref.parse_doc(obj).summary:
                problems.append(f"{modname}.{name}: no summary line")
            for _mname, member in ref.members(obj):
                fn = member.fget if isinstance(member, property) else member
                problems += [f"{modname}.{name}.{p}" for p in hook_doc_problems(fn)]
    assert problems == []


def test_plugin_helpers_are_in_the_api_reference():
    page = ref.api_page()
    for head in (
        "### `expand(path: str, bar_type: BarType) -> list[str]`",
        "### `fill_template(path: str, bar_type: BarType) -> str`",
        "### `to_epoch_ns(",
        "### `in_span(",
        "### `Span(start: int | None, end: int, limit: int | None = None, deadline: float",
    ):
        assert head in page


def test_plugin_guide_explains_every_field_a_source_receives_and_returns():
    import dataclasses

    from nautilus_backfill import BarRequest, SourceResult, Span

    guide = (DOCS / "plugins.md").read_text()
    rows = set(re.findall(r"^\| `(\w+)`(?:, `(\w+)`)? \|", guide, re.M))
    documented = {name for row in rows for name in row if name}
    fields = {f.name for cls in (BarRequest, Span, SourceResult) for f in dataclasses.fields(cls)}
    assert sorted(fields - documented) == []


# -- report vocabulary --------------------------------------------------------------------------


def drop_reasons() -> set[str]:
    from nautilus_backfill.validate import REASONS

    found = set(REASONS)
    for path in [*(ROOT / "core").glob("*.py"), *(ROOT / "plugins").glob("*/*.py")]:
        found |= set(re.findall(r"""\b(?:dropped|drops)\[["'](\w+)["']\]""", path.read_text()))
    return found


def test_every_drop_reason_is_explained_on_the_report_page():
    page = (DOCS / "report.md").read_text()
    documented = set(
        re.findall(
            r"^\| `(\w+)` \| (?:validate|merge|source|precision|fit to cache|convert)", page, re.M
        )
    )
    reasons = drop_reasons()
    assert {"unparseable", "overlap", "over_capacity", "no_precision"} <= reasons
    assert sorted(reasons - documented) == []


def source_statuses() -> set[str]:
    """Every status a source attempt can get: ``status = "..."`` and ``SourceError(msg, "...")``."""
    found = set()
    for path in [*(ROOT / "core").glob("*.py"), *(ROOT / "plugins").glob("*/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            values = []
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "SourceError":
                values = node.args[1:2] + [k.value for k in node.keywords if k.arg == "status"]
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:  # `a.status = ...` and `a.status, a.error = ..., ...`
                    pairs = (
                        zip(t.elts, node.value.elts, strict=False)
                        if isinstance(t, ast.Tuple) and isinstance(node.value, ast.Tuple)
                        else [(t, node.value)]
                    )
                    values += [
                        v
                        for tt, v in pairs
                        if getattr(tt, "attr", getattr(tt, "id", None)) == "status"
                    ]
                # Code-to-status tables, such as the IB plugin's CONNECTION_CODES.
                if isinstance(node.value, ast.Dict) and any(
                    getattr(t, "id", "").endswith("CODES") for t in targets
                ):
                    values += node.value.values
            values = [
                x
                for v in values
                for x in ((v.body, v.orelse) if isinstance(v, ast.IfExp) else (v,))
            ]
            found |= {
                v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)
            }
    return found


def test_every_source_status_is_explained():
    docs = (DOCS / "report.md").read_text() + (DOCS / "troubleshooting.md").read_text()
    statuses = source_statuses()
    assert {"refused", "timeout", "no_subscription", "invalid"} <= statuses
    assert sorted(s for s in statuses if f"`{s}`" not in docs) == []


def test_readme_links_point_at_files_that_exist():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    assert len(links) > 5
    assert [link for link in links if "://" not in link and not (ROOT / link).exists()] == []


# -- the site -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_site_builds_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (the [docs] extra; `make install` installs it)")
    out = subprocess.run(
        [mkdocs, "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": ""},
    )
    assert out.returncode == 0, out.stderr
    hooks = (tmp_path / "site" / "reference" / "hooks" / "index.html").read_text()
    assert "register_sources" in hooks and "validate_bars" in hooks
