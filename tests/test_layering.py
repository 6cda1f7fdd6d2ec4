"""The floors of the code: each folder of study/ imports only its own folder and those below it, and
rethink/ (the science) imports no experiment-layer library. Imports are read from the source (absolute,
relative, inside functions, and module names given as strings to importlib or sys.modules)."""

import ast
import re
from pathlib import Path

from conftest import REPO

# Top floor first: commands > verdict > final > search > records > plan (> rethink, the science).
FLOORS = ("commands", "verdict", "final", "search", "records", "plan")
RANK = {folder: len(FLOORS) - i for i, folder in enumerate(FLOORS)}
MODULE_STRING = re.compile(r"^study\.([a-z_]+)\b")


def study_modules(root: Path = REPO) -> dict[str, Path]:
    """'study.search.trunk' -> its path, for every module of study/ (package __init__ files included)."""
    out = {}
    for path in sorted((root / "study").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported_names(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of everything `module` imports, or names as a string."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                names += [(node.lineno, f"{target}.{a.name}" if not node.module else target) for a in node.names]
            else:
                names.append((node.lineno, node.module or ""))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_STRING.match(node.value):
            names.append((node.lineno, node.value.split(":")[0]))
    return names


def floor_of(module: str) -> str | None:
    """The study/ folder a dotted name lies in ('study.search.trunk' -> 'search'); None outside them."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "study" and parts[1] in RANK else None


def upward_imports(root: Path = REPO) -> list[str]:
    """'file:line imports name (floor X above floor Y)' for every import that climbs."""
    found = []
    for module, path in study_modules(root).items():
        mine = floor_of(module)
        for line, name in imported_names(module, path):
            theirs = floor_of(name)
            if name.startswith("study.") and mine is None and module != "study":
                found.append(f"{path.relative_to(root)}:{line} imports {name} from outside the floors")
            elif mine and theirs and RANK[theirs] > RANK[mine]:
                found.append(f"{path.relative_to(root)}:{line} imports {name} ({theirs} is above {mine})")
    return found


def test_every_module_of_study_lies_on_a_floor():
    loose = [m for m in study_modules() if m != "study" and floor_of(m) is None]
    assert loose == [], f"modules outside {FLOORS}: {loose}"
    assert {floor_of(m) for m in study_modules()} - {None} == set(FLOORS)


def test_no_module_imports_a_floor_above_its_own():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path):
    """The checker itself: a copy of study/ with one upward import (plan -> search) is caught, in each form."""
    import shutil

    shutil.copytree(REPO / "study", tmp_path / "study")
    spec = tmp_path / "study" / "plan" / "spec.py"
    text = spec.read_text()
    spec.write_text(
        text
        + "\n\ndef _late():\n    from ..search import trunk  # noqa\n"
        + "    from study.verdict.claims import claims  # noqa\n"
        + "    return __import__('sys').modules.get('study.final.picks')\n"
    )
    found = upward_imports(tmp_path)
    assert len(found) == 3, found
    assert all(f.startswith("study/plan/spec.py:") for f in found)
    assert {f.split(" (")[1] for f in found} == {f"{up} is above plan)" for up in ("search", "verdict", "final")}


def test_science_layer_never_imports_the_study_layer():
    banned = {"optuna", "mlflow", "study", "optuna_dashboard", "ray"}
    offenders = []
    for path in (REPO / "rethink").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in banned]
    assert offenders == []


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """module -> the study modules it imports (any form above, TYPE_CHECKING blocks included), by name."""
    modules = study_modules(root)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for _, name in imported_names(module, path):
            while name and name not in modules:  # `from .claims import Analysis` names study.verdict.claims
                name = name.rpartition(".")[0]
            if name and name != module and name != "study" and not module.startswith(name + "."):
                targets.add(name)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, each as the modules along it (depth-first; one per strongly connected set)."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_module_of_study_imports_itself_back_through_another():
    assert cycles(import_graph()) == []


def test_the_check_sees_an_import_circle(tmp_path):
    import shutil

    shutil.copytree(REPO / "study", tmp_path / "study")
    stats = tmp_path / "study" / "verdict" / "stats.py"
    stats.write_text(stats.read_text() + "\n\ndef _late():\n    from .claims import claims  # noqa\n")
    found = cycles(import_graph(tmp_path))
    assert found and any("study.verdict.stats" in c and "study.verdict.claims" in c for c in found)
