import ast

from conftest import REPO


def test_science_layer_never_imports_the_study_layer():
    banned = {"optuna", "mlflow", "study", "optuna_dashboard"}
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
