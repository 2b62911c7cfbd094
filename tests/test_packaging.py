"""What the code imports is declared: a fresh clone installs everything it needs.

A green run on a machine where packages were installed by hand can hide a missing dependency;
this test reads every import of the project and checks it against pyproject.toml (runtime code
against ``dependencies``; tests and benchmarks may also use the ``dev`` and ``bench`` extras),
and checks that environment.yml mirrors pyproject.toml for conda users.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

from gisserver.config import PROJECT_ROOT

LOCAL = {"gisserver", "layers", "tiles", "lidar", "flood", "licensing", "migrations", "tests", "bench", "app"}
RUNTIME_DIRS = ("gisserver", "layers", "tiles", "lidar", "flood", "licensing", "migrations")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str:
    return _norm(re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0])


def _pyproject():
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]


def _imports(folder: str) -> dict[str, str]:
    found = {}
    for path in (PROJECT_ROOT / folder).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                sibling = (path.parent / f"{top}.py").exists()  # e.g. bench/tiles_common.py
                if top not in LOCAL and top not in sys.stdlib_module_names and not sibling:
                    found.setdefault(top, str(path.relative_to(PROJECT_ROOT)))
    return found


def _undeclared(folders, allowed: set[str]) -> list[str]:
    dists = packages_distributions()
    missing = []
    for folder in folders:
        if not (PROJECT_ROOT / folder).is_dir():
            continue
        for module, where in _imports(folder).items():
            candidates = {_norm(d) for d in dists.get(module, [])}
            if not candidates and _norm(module) in allowed:
                continue  # an optional extra that this environment did not install (e.g. fast-tin, bench)
            if not candidates:
                missing.append(f"{module} (imported in {where}) is not installed")
            elif not candidates & allowed and not _provided_by_declared(candidates, allowed):
                missing.append(f"{module} (imported in {where}, from {sorted(candidates)}) is not declared")
    return missing


def _provided_by_declared(candidates: set[str], allowed: set[str]) -> bool:
    """A module may come from a dependency of a declared package (e.g. affine via rasterio)."""
    from importlib.metadata import PackageNotFoundError, requires

    for dist in allowed:
        try:
            reqs = requires(dist) or []
        except PackageNotFoundError:
            continue
        if {_req_name(r) for r in reqs if "extra ==" not in r} & candidates:
            return True
    return False


# extras that runtime code may import when installed (it falls back when they are not)
OPTIONAL_RUNTIME_EXTRAS = ("fast-tin",)


def test_runtime_imports_are_declared():
    project = _pyproject()
    runtime = {_req_name(r) for r in project["dependencies"]}
    for extra in OPTIONAL_RUNTIME_EXTRAS:
        runtime |= {_req_name(r) for r in project["optional-dependencies"][extra]}
    assert _undeclared(RUNTIME_DIRS, runtime) == []


def test_test_and_bench_imports_are_declared():
    project = _pyproject()
    allowed = {_req_name(r) for r in project["dependencies"]}
    for extra in project.get("optional-dependencies", {}).values():
        allowed |= {_req_name(r) for r in extra}
    assert _undeclared(("tests", "bench"), allowed) == []


def test_environment_yml_mirrors_pyproject():
    import subprocess

    generated = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "environment_yml.py")], capture_output=True, text=True,
        check=True,
    ).stdout
    current = (PROJECT_ROOT / "environment.yml").read_text(encoding="utf-8")
    assert current == generated, "regenerate: .venv/bin/python scripts/environment_yml.py > environment.yml"
    listed = {_norm(m) for m in re.findall(r"^\s*-\s*([A-Za-z0-9_.\-]+)", current, flags=re.M)}
    wanted = {_req_name(r) for r in _pyproject()["dependencies"]}
    aliases = {"psycopg2-binary": "psycopg2"}
    assert sorted(n for n in wanted if aliases.get(n, n) not in listed) == []
