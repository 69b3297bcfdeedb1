"""daskod uses only the public APIs of its dependencies (they break silently on a minor
release otherwise): no underscore modules or attributes of dask, distributed, zarr, fsspec,
s3fs, numcodecs, and no ``zarr.core``."""

from __future__ import annotations

import ast
import pathlib

import daskod

DEPENDENCIES = {"dask", "distributed", "zarr", "fsspec", "s3fs", "numcodecs", "xarray"}
PACKAGE = pathlib.Path(daskod.__file__).parent


def _violations(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    aliases: dict[str, str] = {}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for item in node.names:
                root = item.name.split(".")[0]
                if root in DEPENDENCIES:
                    aliases[(item.asname or item.name).split(".")[0]] = item.name
                    if _private(item.name):
                        found.append(f"{path.name}:{node.lineno} import {item.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if root in DEPENDENCIES:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                if any(_private(n) for n in names):
                    found.append(f"{path.name}:{node.lineno} from {node.module} import ...")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not (
                node.attr.startswith("__") and node.attr.endswith("__")):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases:
                found.append(f"{path.name}:{node.lineno} {base.id}...{node.attr}")
        # Private methods of objects that dependencies hand back (file systems, pools).
        if isinstance(node, ast.Attribute) and node.attr in {
                "_find", "_rm", "_ls", "_cat_file", "_pipe_file", "_max_workers", "_pool",
                "_processes", "_state", "_graph"}:
            found.append(f"{path.name}:{node.lineno} .{node.attr}")
        # The same reached by name: getattr(node, "_tag").
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr", "setattr") and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
                and node.args[1].value.startswith("_")
                and not node.args[1].value.startswith("__")):
            found.append(f"{path.name}:{node.lineno} {node.func.id}(..., "
                         f"{node.args[1].value!r})")
    return found


def _private(dotted: str) -> bool:
    parts = dotted.split(".")
    return any(p.startswith("_") and not p.startswith("__") for p in parts[1:]) or (
        parts[:2] == ["zarr", "core"])


def test_no_private_api_of_dependencies():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found.extend(_violations(path))
    assert found == []


def test_the_scan_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import dask\nfrom dask._task_spec import Task\n"
                   "from zarr.core.sync import sync\n"
                   "x = dask._config\nfs._find('a')\npool._max_workers\n"
                   "getattr(node, '_tag', None)\n")
    assert len(_violations(bad)) == 6


def test_stage_packages_do_not_import_the_engine():
    """Block functions (one tile, numpy) live in the stage packages; the graph wiring in
    modes/ and engine/: a stage module importing the engine would blur that line."""
    stages = ["resample", "median", "blot", "flag", "ifu", "geometry", "spec"]
    found = []
    for stage in stages:
        for path in sorted((PACKAGE / stage).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                found += [f"{stage}/{path.name}: {n}" for n in names
                          if n.startswith(("daskod.engine", "daskod.modes"))]
    assert found == []
