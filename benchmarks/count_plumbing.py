"""Lines of plumbing against lines of science kernels, counted as issue 11 counts them.

Code lines only: blank lines, comments and docstrings (module, class, function) are not
counted. "Plumbing" is the engine, the mode wiring and the orchestration (``engine/``,
``modes/``, ``_api.py``, ``io/_store.py``, ``io/_location.py``); "kernels" are the private
numpy kernel modules of the stage packages (``*/_kernels.py``).

    python benchmarks/count_plumbing.py              # this checkout
    python benchmarks/count_plumbing.py --rev 8915289   # a commit (read with git show)
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUMBING = ("daskod/engine/", "daskod/modes/", "daskod/_api.py", "daskod/io/_store.py",
            "daskod/io/_location.py")
#: Before the engine rewrite the orchestration of the IFU modes lived beside their kernels.
PLUMBING_BEFORE = ("daskod/ifu/difference.py", "daskod/ifu/cube_method.py")


def code_lines(source: str) -> int:
    """Lines that are neither blank, nor a comment, nor part of a docstring."""
    tree = ast.parse(source)
    docs: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                docs.update(range(first.lineno, first.end_lineno + 1))
    return sum(1 for i, line in enumerate(source.splitlines(), 1)
               if line.strip() and not line.strip().startswith("#") and i not in docs)


def _files(rev: str | None) -> dict[str, str]:
    if rev is None:
        return {str(p.relative_to(ROOT)): p.read_text()
                for p in (ROOT / "daskod").rglob("*.py")}
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "daskod"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    return {n: subprocess.run(["git", "show", f"{rev}:{n}"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout
            for n in names if n.endswith(".py")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default=None, help="a git commit (default: the working tree)")
    parser.add_argument("--with-ifu-orchestration", action="store_true",
                        help="also count ifu/difference.py and ifu/cube_method.py as plumbing "
                             "(where the orchestration lived before the engine rewrite)")
    args = parser.parse_args()
    files = _files(args.rev)
    prefixes = PLUMBING + (PLUMBING_BEFORE if args.with_ifu_orchestration else ())
    plumbing = {n: code_lines(s) for n, s in files.items() if n.startswith(prefixes)}
    kernels = {n: code_lines(s) for n, s in files.items() if n.endswith("/_kernels.py")}
    for name, n in sorted(plumbing.items()):
        print(f"{n:6d}  {name}")
    print(f"{sum(plumbing.values()):6d}  plumbing total ({len(plumbing)} files)")
    print(f"{sum(kernels.values()):6d}  numpy kernels (*/_kernels.py, {len(kernels)} files)")


if __name__ == "__main__":
    main()
