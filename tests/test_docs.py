"""The docs stay true: README.md and docs/*.md checked against the code they describe.

The lists come from the code (the app's url_map, Config's fields, a walk of the app package), so a new or
renamed route, setting or module fails here until the docs follow it. One test starts the real service and
compares the documented upload answer and task record with real ones.
"""

from __future__ import annotations

import importlib.util
import json
import pkgutil
import re
from dataclasses import fields
from pathlib import Path

import pytest

import app as app_package
from app.config import Config
from app.tools import configdoc
from tests.support import REPO
from tests.support.service import Service

README = REPO / "README.md"
DOCS = REPO / "docs"
API = DOCS / "api.md"
ARCHITECTURE = DOCS / "architecture.md"
CONFIGURATION = DOCS / "configuration.md"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
SAMPLE = REPO / "tests" / "data" / "movies_data_assignment.head10.csv"
README_MAX_LINES = 120

_FENCE = re.compile(r"^```[^\n]*\n.*?^```[ \t]*$", re.M | re.S)
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
_ROUTE = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE) (/[^\s`|,;)]*)")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_REPO_PATH = re.compile(r"(?<![\w./-])((?:app|bench|docs|scripts|tests)/[\w.*/-]*[\w*/])")
_MODULE_ROW = re.compile(r"^\| `(app/[^`]+)` \| (.*?) \|$", re.M)


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def prose(text: str) -> str:
    """The text without its fenced code blocks."""
    return _FENCE.sub("", text)


def code_blocks(text: str) -> list[str]:
    return [block.split("\n", 1)[1].rsplit("\n", 1)[0] for block in _FENCE.findall(text)]


def sessions(text: str) -> list[tuple[str, str]]:
    """(command, output) for each `$ ` line of the page's code blocks; its output runs to the next `$ `."""
    found = []
    for block in code_blocks(text):
        for part in re.split(r"^(?=\$ )", block, flags=re.M):
            if part.startswith("$ "):
                command, _, output = part.partition("\n")
                found.append((command, output.strip()))
    return found


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, heading in _HEADING.findall(prose(read(path))):
        base = slug(heading)
        found.add(f"{base}-{seen[base]}" if base in seen else base)
        seen[base] = seen.get(base, 0) + 1
    return found


def routes(flask_app) -> set[str]:
    return {
        f"{method} {rule.rule}"
        for rule in flask_app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def named_routes(text: str) -> set[str]:
    return {f"{method} {path.split('?')[0].rstrip('.:')}" for method, path in _ROUTE.findall(text)}


def modules() -> set[str]:
    """Every module of the app package, as its file's path: app/queue.py, app/api/routes/__init__.py, …,
    and the web page's ES modules: app/static/main.js, …"""
    found = {"app/__init__.py"}
    for info in pkgutil.walk_packages(app_package.__path__, "app."):
        path = info.name.replace(".", "/")
        found.add(f"{path}/__init__.py" if info.ispkg else f"{path}.py")
    found |= {path.relative_to(REPO).as_posix() for path in (REPO / "app" / "static").glob("*.js")}
    return found


# -- the API: every route has a section in docs/api.md, and the docs name no other ------------------------


def test_every_route_has_a_section_in_api_md(app):
    documented = set().union(*(named_routes(h) for _, h in _HEADING.findall(prose(read(API)))))
    missing = sorted(routes(app) - documented)
    assert missing == [], f"routes with no section (## `METHOD /path`) in docs/api.md: {missing}"


@pytest.mark.parametrize("page", [p for p in PAGES if p != CONFIGURATION], ids=lambda p: p.name)
def test_the_docs_name_no_route_that_does_not_exist(app, page):
    unknown = sorted(named_routes(prose(read(page))) - routes(app))
    assert unknown == [], f"{page.relative_to(REPO)} names routes the app does not have: {unknown}"


# -- settings: declared in app/settings.py; .env.example and docs/configuration.md are written from it ------


def test_every_setting_is_in_configuration_md():
    text = read(CONFIGURATION)
    missing = [f.name for f in fields(Config) if f"| `{f.name}` |" not in text]
    assert missing == [], f"settings missing from docs/configuration.md: {missing}"


def test_configuration_md_and_env_example_are_what_the_generator_writes():
    for path, text in configdoc.outputs().items():
        assert read(path) == text, (
            f"{path.relative_to(REPO)} is stale: run `make docs` (python -m app.tools.configdoc) and commit it"
        )
    assert configdoc.main(["--check"]) == 0


def test_the_entry_the_docs_show_is_one_of_the_table():
    assert f"\n    {configdoc.ENTRY_EXAMPLE}\n" in read(REPO / "app" / "settings.py")
    assert configdoc.ENTRY_EXAMPLE in read(ARCHITECTURE)


# -- modules: each has a role in docs/architecture.md ---------------------------------------------------


def test_every_module_has_a_role_in_architecture_md():
    roles = dict(_MODULE_ROW.findall(read(ARCHITECTURE)))
    missing = sorted(m for m in modules() if not roles.get(m))
    assert missing == [], f"modules with no row (| `app/….py` | role |) in docs/architecture.md: {missing}"
    gone = sorted(set(roles) - modules())
    assert gone == [], f"docs/architecture.md lists modules that do not exist: {gone}"


# -- links and the files the docs name ------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_at_files_and_headings_that_exist(page):
    broken = []
    for target in _LINK.findall(re.sub(r"`[^`\n]*`", "", prose(read(page)))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target} (no heading #{anchor} in {file.relative_to(REPO)})")
    assert broken == [], f"{page.relative_to(REPO)}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_files_and_modules_the_docs_name_exist(page):
    text = read(page)
    missing = [p for p in _REPO_PATH.findall(text) if not (any(REPO.glob(p)) if "*" in p else (REPO / p).exists())]
    missing += [m for m in re.findall(r"python -m (app(?:\.\w+)+)", text) if importlib.util.find_spec(m) is None]
    assert missing == [], f"{page.relative_to(REPO)} names files or modules that do not exist: {sorted(set(missing))}"


def test_the_readme_links_every_docs_page():
    linked = {target.split("#")[0] for target in _LINK.findall(read(README))}
    missing = [f"docs/{p.name}" for p in sorted(DOCS.glob("*.md")) if f"docs/{p.name}" not in linked]
    assert missing == [], f"docs pages the README does not link: {missing}"


# -- the README: the two commands, and short -------------------------------------------------------------


def test_the_readme_holds_the_two_set_up_commands_and_stays_short():
    text = read(README)
    setup = [line.split("#")[0].strip() for line in code_blocks(text)[0].splitlines()]
    assert setup == ["make run", "make test"], "the README's first code block is the set-up: make run, make test"
    others = [line for block in code_blocks(text)[1:] for line in block.splitlines() if line.startswith("make ")]
    assert others == [], f"set-up commands beyond the two: {others}"
    lines = len(text.splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines, over {README_MAX_LINES}: move detail to docs/"


def test_ci_runs_make_setup_then_make_lint_then_make_test():
    commands = [line.strip() for line in read(REPO / ".ci" / "run").splitlines() if line.startswith("make")]
    assert commands == ["make setup", "make lint", "make test"]


# -- real output: the documented upload answer and task record have the real one's fields ----------------


def documented(page: Path, command: str) -> dict:
    """The JSON a page shows for the first command matching `command` (a regex), with nothing cut from it."""
    for line, output in sessions(read(page)):
        if re.fullmatch(command, line) and "…" not in output:
            return json.loads(output)
    raise AssertionError(f"{page.relative_to(REPO)} shows no complete output for {command!r}")


AS_ADMIN = r'\$ curl -s -H "Authorization: Bearer \$KEY" '
UPLOAD = AS_ADMIN + r"-F file=@\S+ http://127\.0\.0\.1:5000/api/v1/upload"
RECORD = AS_ADMIN + r"http://127\.0\.0\.1:5000/api/v1/process/[0-9a-f-]{36}"


@pytest.mark.server
def test_the_documented_upload_answer_and_task_record_are_the_real_ones(tmp_path):
    service = Service(tmp_path)
    server = service.start()
    try:
        status, _, answer = server.upload(SAMPLE, "movies.csv")
        assert status == 202, answer
        record = server.wait_for(answer["task_id"])
    finally:
        service.stop()
    for page in (README, API):
        shown = documented(page, UPLOAD)
        assert sorted(shown) == sorted(answer), f"{page.name}: the upload answer's fields"
        assert (shown["kind"], shown["message"]) == (answer["kind"], answer["message"])
        shown = documented(page, RECORD)
        assert sorted(shown) == sorted(record), f"{page.name}: the task record's fields"
        same = ("kind", "status", "attempts", "rows_read", "rows_rejected", "size", "bytes_total", "percent")
        assert {k: shown[k] for k in same} == {k: record[k] for k in same}, f"{page.name}: the task record"
