"""The package keeps its shape: imports point one way, down the layers (the README's
Layout), never round in a cycle, and no module grows past a size one reads at a sitting.

Read from the source with `ast`, so an import inside a function counts as much as one at
the top: a lower layer that reaches up lazily is still reaching up."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "mailer"

FOUNDATION, PIPELINE, USE_CASES, FRONT_DOORS = 1, 2, 3, 4

# Every module of src/mailer, by its name under `mailer` (a package's entry holds its
# modules); a new module fails the test until it is placed here.
LAYERS = {
    # foundation: what everything else stands on
    "mailer": FOUNDATION,  # the package itself: its version
    "errors": FOUNDATION,
    "models": FOUNDATION,
    "models_desk": FOUNDATION,
    "models_editions": FOUNDATION,
    "columns": FOUNDATION,
    "sections_readers": FOUNDATION,
    "bounces": PIPELINE,
    "settings": FOUNDATION,
    "sections": FOUNDATION,
    "sections_donation": FOUNDATION,
    "i18n": FOUNDATION,
    "db": FOUNDATION,
    "migrations": FOUNDATION,
    "events": FOUNDATION,
    "crontab": FOUNDATION,
    "tokens": FOUNDATION,
    "replies": FOUNDATION,
    "throttle": FOUNDATION,
    "signing": FOUNDATION,
    "textpart": FOUNDATION,
    "caches": FOUNDATION,
    "samples": FOUNDATION,
    "beats": FOUNDATION,
    "waking": FOUNDATION,
    # the pipeline stages and the sending engine
    "sources": PIPELINE,
    "articles": PIPELINE,
    "digest": PIPELINE,
    "editions": PIPELINE,
    "issues": PIPELINE,
    "render": PIPELINE,
    "donation": PIPELINE,
    "goal": PIPELINE,
    "gift_thanks": PIPELINE,
    "welcome": PIPELINE,
    "donor_copy": PIPELINE,
    "donors": PIPELINE,
    "references": PIPELINE,
    "qrcodes": PIPELINE,
    "clicks": PIPELINE,
    "links": PIPELINE,
    "messages": PIPELINE,
    "subscribers": PIPELINE,
    "erasure": PIPELINE,
    "subscriber_csv": PIPELINE,
    "reader_languages": PIPELINE,
    "public_archive": PIPELINE,  # issue 17: the archive of sent issues per language
    "smtp": PIPELINE,
    "smtpwire": PIPELINE,
    "outbox": PIPELINE,
    "strikes": PIPELINE,
    "store_sql": PIPELINE,  # issue 18: the outbox's statements per dialect, on the DBAPI
    "backoff": PIPELINE,
    "sendloop": PIPELINE,
    "seams": PIPELINE,
    "delivery": PIPELINE,
    "processes": PIPELINE,
    "transactional": PIPELINE,
    "report": PIPELINE,
    "backup": PIPELINE,
    "catcher": PIPELINE,
    "editors": PIPELINE,
    "password_links": PIPELINE,
    "second_factor": PIPELINE,
    "roster": PIPELINE,
    "gifts": PIPELINE,
    "doctor": PIPELINE,  # mailer doctor's checks of DNS and the relay
    # the use cases: the only callers of the engine
    "runs": USE_CASES,
    "signup": USE_CASES,
    "supporting": USE_CASES,
    "demo": USE_CASES,
    "desk": USE_CASES,
    "desk_articles": USE_CASES,
    "desk_subscribers": USE_CASES,
    "desk_sending": USE_CASES,
    "desk_overview": USE_CASES,
    "bounce_fetching": USE_CASES,  # the [bounces] mailbox read over IMAP
    "redirects": USE_CASES,
    "read_online": USE_CASES,
    "fundraising": USE_CASES,
    "desk_donations": USE_CASES,
    "bounce_processing": USE_CASES,
    # the front doors
    "cli": FRONT_DOORS,
    "__main__": FRONT_DOORS,
    "scheduler": FRONT_DOORS,
    "watches": FRONT_DOORS,
    "web": FRONT_DOORS,
}
OUTSIDE = {
    "testing",
    "testing.relay",
    "testing.dns",
    "testing.imap",
    "testing.certs",
    "testing.databases",
    "testing.commands",
}  # the tests' helpers: they may use anything, and nothing uses them

MAX_LINES = 450
MAX_CLI_LINES = 300

# The engine's ways in: only the use cases (and the engine itself) build an Outbox or
# start a send.
ENGINE_ENTRIES = {"outbox": {"Outbox"}, "delivery": {"deliver", "send_test_copy"}}
ENGINE = {"outbox", "delivery", "sendloop", "seams", "processes"}
USE_CASE_MODULES = {"runs"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SRC.rglob("*.py"))}


def imports_in(path: Path) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement of the module, wherever in the file (functions included)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node


def source_of(name: str, path: Path, node: ast.ImportFrom) -> str:
    """The module a `from ... import` reads from, a relative one made absolute."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    base = package.split(".")
    base = base[: len(base) - node.level + 1] if node.level else []
    return ".".join([*base, *([node.module] if node.module else [])])


def imported(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """The mailer modules `name` imports, wherever in the file (functions included)."""
    for node in imports_in(path):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            source = source_of(name, path, node)
            # `from mailer import subscribers` imports the module; `from mailer.x import f`, x
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                for alias in node.names
            ]
        for target in targets:
            while target and target not in known:  # `import mailer.a.b` names a.b's module
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: set(imported(name, path, known)) for name, path in found.items()}


def short(name: str) -> str:
    return name.removeprefix("mailer.") if name != "mailer" else name


def layer(name: str) -> int | None:
    key = short(name)
    while key not in LAYERS and "." in key:
        key = key.rpartition(".")[0]
    return LAYERS.get(key)


def layered_edges() -> dict[str, set[str]]:
    """The import graph between layered modules."""
    return {
        short(a): {short(b) for b in targets}
        for a, targets in graph().items()
        if short(a) not in OUTSIDE
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan's)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_path_round(group, edges) for group in groups]


def _path_round(group: set[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest way from the group's first module back to itself, within the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for nxt in sorted(edges.get(node, set()) & group):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                frontier.append(nxt)
    raise AssertionError(f"no way round {group}")


def test_every_module_has_its_place_in_the_layers():
    """A new module is placed in LAYERS (or OUTSIDE) when it is added."""
    unplaced = [short(n) for n in modules() if short(n) not in OUTSIDE and layer(n) is None]
    assert unplaced == [], f"add these to LAYERS in {Path(__file__).name}: {unplaced}"


def test_no_import_cycles():
    """No mailer module imports itself round the houses, not even inside a function."""
    found = [" -> ".join(cycle) for cycle in cycles(layered_edges())]
    assert found == [], "import cycles:\n  " + "\n  ".join(found)


def test_imports_point_down_the_layers():
    """A module imports from its own layer or below: never a use case from the engine,
    nor a front door from a use case."""
    upward = sorted(
        f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
        for a, targets in layered_edges().items()
        for b in targets
        if b in OUTSIDE or (layer(a) or 0) < (layer(b) or 0)
    )
    assert upward == [], "imports that point up:\n  " + "\n  ".join(upward)


def test_no_module_is_too_long_to_read_at_a_sitting():
    """No module of src/mailer over 450 lines, and none of the CLI's over 300."""
    too_long = []
    for name, path in modules().items():
        limit = MAX_CLI_LINES if short(name).startswith("cli.") else MAX_LINES
        lines = len(path.read_text(encoding="utf-8").splitlines())
        relative = str(path.relative_to(SRC))
        if lines > limit:
            too_long.append(f"{relative}: {lines} lines (at most {limit})")
    assert too_long == [], "\n".join(too_long)


def engine_callers() -> set[tuple[str, str]]:
    """(module, name) for each module outside the engine and the use cases that imports
    one of the engine's ways in (a whole engine module counts as all of them)."""
    found = set()
    for name, path in modules().items():
        module = short(name)
        if module in ENGINE | USE_CASE_MODULES | OUTSIDE:
            continue
        for node in imports_in(path):
            if isinstance(node, ast.ImportFrom):
                source = short(source_of(name, path, node))
                names = {alias.name for alias in node.names}
                found |= {(module, entry) for entry in ENGINE_ENTRIES.get(source, set()) & names}
                if source == "mailer":
                    for whole in names & set(ENGINE_ENTRIES):
                        found |= {(module, entry) for entry in ENGINE_ENTRIES[whole]}
            else:
                for alias in node.names:
                    whole = short(alias.name)
                    found |= {(module, entry) for entry in ENGINE_ENTRIES.get(whole, set())}
    return found


def test_only_the_use_cases_start_the_engine():
    """Front doors ask a use case to send; they build no Outbox and call no deliver()."""
    found = sorted(f"{m} imports {n}" for m, n in engine_callers())
    assert found == [], "call a use case (runs) instead:\n  " + "\n  ".join(found)


def test_the_import_reader_sees_every_form_of_import(tmp_path):
    """Top-level, in a function, relative, and `from mailer import module` alike."""
    known = {"mailer", "mailer.a", "mailer.b", "mailer.c", "mailer.pkg", "mailer.pkg.d"}
    path = tmp_path / "mailer" / "pkg" / "e.py"
    path.parent.mkdir(parents=True)
    path.write_text(
        "import mailer.a\n"
        "from mailer import b, __version__\n"
        "from . import d\n"
        "from .. import c\n"
        "def f():\n"
        "    from mailer.pkg.d import g\n"
        "import json\n"
    )
    assert set(imported("mailer.pkg.e", path, known)) == {
        "mailer.a",
        "mailer.b",
        "mailer",
        "mailer.pkg.d",
        "mailer.c",
    }


def test_a_cycle_is_named_module_by_module():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c", "a"]]


def test_every_package_is_installed():
    """A non-editable install (pip install ., pipx) ships only the packages pyproject.toml
    lists: each folder of src/mailer with an __init__.py must be there."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    listed = set(
        tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    source = root / "src"
    packages = {
        ".".join(init.parent.relative_to(source).parts) for init in source.rglob("__init__.py")
    }
    assert packages - listed == set(), "add these to [tool.setuptools] packages"
