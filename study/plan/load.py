"""Reading a spec: the TOML file (a path or a shipped name), --set overrides, the schema, and the checks
that its search space reaches the budgets it is judged at, all before anything trains."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rethink.models.weights import WeightsError, file_sha256

from .layout import check_reach, known_on_load
from .smoke import smoke_spec
from .spec import SPECS_DIR, Spec, SpecError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _union_branch(part: str) -> bool:
    """pydantic's name for a branch of a union in an error's location (not a field)."""
    return "[" in part or part in ("constrained-int", "int", "str", "float", "bool")


def _format(e: ValidationError, source: str) -> SpecError:
    """One line naming every bad field: `FILE: invalid spec: FIELD: why; FIELD: why`."""
    by_field: dict[str, list[str]] = {}  # a union's branches report on one field: join them with "or"
    for err in e.errors():
        where = ".".join(str(p) for p in err["loc"] if not _union_branch(str(p))) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see study/specs/quick.toml)"
        by_field.setdefault(where, []).append(msg)
    items = [f"{where}: {' or '.join(msgs)}" for where, msgs in by_field.items()]
    return SpecError(f"{source}: invalid spec: " + "; ".join(items))


def parse_value(text: str) -> Any:
    """A --set value as TOML (numbers, booleans, lists, tables), else as a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for item in overrides:
        if "=" not in item:
            raise SpecError(f"--set {item!r}: expected KEY=VALUE, e.g. --set study.n_trials=4")
        key, value = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SpecError(f"--set {key}: {p} is not a table")
        node[parts[-1]] = parse_value(value.strip())
    return data


def resolve_spec_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = SPECS_DIR / (name_or_path if name_or_path.endswith(".toml") else f"{name_or_path}.toml")
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(f.stem for f in SPECS_DIR.glob("*.toml")))
    raise SpecError(f"spec not found: {name_or_path} (a TOML path, or a shipped spec: {names})")


def load_spec(name_or_path: str, overrides: list[str] = (), smoke: bool = False) -> Spec:
    """The spec, its --set overrides applied, validated; with `smoke`, at smoke size (study/plan/smoke.py)."""
    path = resolve_spec_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML: {e}") from e
    data = apply_overrides(data, list(overrides))
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        raise _format(e, str(path)) from None
    spec = with_weights_digest(spec, str(path))
    if smoke:
        try:
            spec = smoke_spec(spec)
        except ValidationError as e:
            raise _format(e, f"{path} (smoke mode)") from None
    check_reach(spec, known_on_load(spec), f"{path}: ")
    return spec


def with_weights_digest(spec: Spec, source: str) -> Spec:
    """A spec whose base comes from a file: the path made absolute (relative ones are taken from the current
    folder, as data_root is) and the file's SHA-256 filled in, or checked where the spec pins it."""
    if spec.weights is None:
        return spec
    path = Path(spec.weights).expanduser().resolve()
    try:
        digest = file_sha256(path)
    except WeightsError as e:
        raise SpecError(f"{source}: {e}") from None
    if spec.weights_sha256 not in (None, digest):
        raise SpecError(
            f"{source}: weights: {path} has SHA-256 {digest}, the spec pins {spec.weights_sha256}; the file "
            f"changed: point weights at the file the spec names, or set weights_sha256 = {digest!r}"
        )
    return spec.model_copy(update={"weights": str(path), "weights_sha256": digest})
