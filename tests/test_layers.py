"""Imports point one way (DESIGN §2): cli -> papers -> runner -> evaluation -> methods -> building blocks -> base.

Every ``import lifelong...`` in every module of the package, at module level or inside a
function, is checked against the layer order below; a method file imports only the shared
method bases (``methods/base*.py``, ``config``, ``registry``) and lower layers, never another
method; evaluation knows methods only through the registry (what a learner reads).
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lifelong"

#: package -> rank; a module may import packages of a larger rank (lower layers) and its own package
RANK = {
    "cli": 0,
    "papers": 1,
    "runner": 2,
    "incontext": 2.5,  # in-context studies: own training loop on evaluation's checkpoints; used by papers and cli
    "evaluation": 3,
    "methods": 4,
    "scenarios": 5,
    "data": 6,
    "encoders": 7,
    "heads": 7,
    "layers": 7,
    "adapters": 7,
    "optim": 7,
    "memory": 7,
    "merging": 7,
    "runtime": 8,
    "fileio": 8,
    "values": 8,
    "errors": 9,
}
#: the exceptions, each with its reason
ALLOWED = {
    ("evaluation", "methods.registry"),  # the loop checks what a learner reads (its `inputs` tag)
}
METHOD_SHARED = ("lifelong.methods", "lifelong.methods.config", "lifelong.methods.registry")


def _modules(src: Path):
    for path in sorted(src.rglob("*.py")):
        parts = path.relative_to(src.parent).with_suffix("").parts
        yield ".".join(p for p in parts if p != "__init__"), path


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for n in names:
            if n == "lifelong" or n.startswith("lifelong."):
                yield node.lineno, n


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _problems(src: Path = SRC) -> list[str]:
    out = []
    for me, path in _modules(src):
        mine = _package(me)
        if mine == "":
            continue  # lifelong/__init__.py: lazy re-exports of the public API
        assert mine in RANK, f"{me}: package {mine!r} has no place in the layer order; add it to RANK"
        for line, target in _imports(path):
            theirs = _package(target)
            where = f"{path.relative_to(src.parent)}:{line} imports {target}"
            if theirs == "":
                continue  # the package root: __version__ and lazy re-exports, no side effects
            elif theirs == mine:
                if (
                    mine == "methods"
                    and not me.split(".")[-1].startswith(("base", "config", "registry"))
                    and target not in METHOD_SHARED
                    and not target.split(".")[-1].startswith("base")
                ):
                    out.append(
                        f"{where} (a method imports another method; move the shared part down a layer "
                        "or into a methods/base*.py module)"
                    )
            elif (mine, target.split(".", 1)[1]) in ALLOWED:
                continue
            elif RANK[theirs] <= RANK[mine]:
                out.append(f"{where} ({mine} is not above {theirs})")
    return out


def test_imports_point_one_way():
    problems = _problems()
    assert not problems, "\n".join(problems)


def test_the_check_sees_a_wrong_import(tmp_path):
    fake = tmp_path / "lifelong"
    (fake / "data").mkdir(parents=True)
    (fake / "methods").mkdir()
    (fake / "data" / "bad.py").write_text("def f():\n    from lifelong.methods import make_learner\n")
    (fake / "methods" / "a.py").write_text("from lifelong.methods.b import X\n")
    problems = _problems(fake)
    assert len(problems) == 2, problems
    assert "data is not above methods" in problems[0] and "a method imports another method" in problems[1]


@pytest.mark.parametrize("module", ["lifelong.evaluation", "lifelong.scenarios", "lifelong.data"])
def test_lower_layers_import_without_the_upper_ones(module):
    import subprocess
    import sys

    code = (
        f"import sys, {module}\n"
        "bad = [m for m in ('lifelong.runner', 'lifelong.papers', 'lifelong.cli') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
