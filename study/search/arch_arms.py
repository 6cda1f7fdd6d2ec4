"""The architecture arms of the paper's Section 5 for one pruned model: `uniform`, `guided` and
`transferred` (its pattern from another spec's pruned architecture), each matched to the pruned model's
size as `[arch]` says, with budgets of their own (E epochs of themselves; B the base's training)."""

from __future__ import annotations

from pathlib import Path

from rethink.arms import ARCH_ARMS
from rethink.checkpoint import load_cached
from rethink.data import dataset_shape
from rethink.models import ArchSpec
from rethink.prune import PrunedModel
from rethink.prune.matched import DerivedArch, derive
from rethink.prune.patterns import Pattern, PatternError, pattern_of
from study.plan.arch import base_arch, prune_config
from study.plan.cost import exact_architecture, untrained_pruned
from study.plan.layout import Budgets, arch_budgets
from study.plan.load import load_spec
from study.plan.spec import Spec, SpecError
from study.records.tracking import RunTree

from .rounds import pruned_digest


def source_spec(spec: Spec) -> Spec:
    """The spec `[arch] pattern_from` names, loaded; one setting (not a list of operating points)."""
    try:
        other = load_spec(spec.arch.pattern_from)
    except SpecError as e:
        raise SpecError(f"arch.pattern_from = {spec.arch.pattern_from!r}: {e}") from None
    if other.prune.ratios:
        raise SpecError(
            f"arch.pattern_from = {spec.arch.pattern_from!r} has several operating points (prune.ratios); name a "
            f"spec of one ratio (a TOML file with prune.ratio)"
        )
    return other


def transferred_pattern(spec: Spec, workdir: Path) -> Pattern | None:
    """The layer pattern of `[arch] pattern_from`'s pruned architecture: computed when its method decides the
    architecture without trained weights (L1-norm's variants and ratios, SFP, ThiNet), else read from that
    spec's pruned checkpoint under the same --workdir (refused, naming the field, until it exists)."""
    if "transferred" not in spec.study.arms:
        return None
    other = source_spec(spec)
    if exact_architecture(other):
        _, arch, pruned = untrained_pruned(other, dataset_shape(other.dataset, other.data_root))
        return pattern_of(arch, pruned, other.name)
    base_dir = Path(workdir).parent / other.name / f"base-{other.base_digest()}"
    digest = pruned_digest(other.base_digest(), prune_config(other))
    path = base_dir / f"pruned-{digest}.pt"
    if not path.is_file():
        raise SpecError(
            f"arch.pattern_from = {other.name!r}: its pruned model {path} is not there yet; its method "
            f"({other.prune.method}) picks the architecture from trained weights, so run `rethink study "
            f"{spec.arch.pattern_from}` with the same --workdir first"
        )
    small, ckpt = load_cached(path, digest)
    keep = {int(k): v for k, v in ckpt.meta.get("keep", {}).items()}
    pruned = PrunedModel(ckpt.spec, small, prune_config(other), keep, ckpt.masks)
    return pattern_of(base_arch(other, dataset_shape(other.dataset, other.data_root)), pruned, other.name)


def derive_arms(
    spec: Spec, base_spec: ArchSpec, pruned: PrunedModel, pattern: Pattern | None
) -> dict[str, DerivedArch]:
    """Each architecture arm of the spec at `pruned`'s size; one that cannot be matched is refused naming the
    field, before any arm trains."""
    out = {}
    for arm in (a for a in spec.study.arms if a in ARCH_ARMS):
        try:
            out[arm] = derive(
                arm, base_spec, pruned, pattern if arm == "transferred" else None, spec.arch.match, spec.arch.tolerance
            )
        except PatternError as e:
            field = "arch.pattern_from" if "pattern" in str(e) and arm == "transferred" else "arch.match"
            raise SpecError(f"{field} ({arm} arm): {e}") from None
    return out


def derived_caps(
    caps: Budgets, derived: dict[str, DerivedArch], base_config, base_flops: int, n_train: int
) -> dict[str, Budgets]:
    """The budgets of each architecture arm, from its own forward MACs."""
    return {arm: arch_budgets(caps, base_config, base_flops, d.macs, n_train) for arm, d in derived.items()}


def log_derived(tree: RunTree, run_id: str, derived: dict[str, DerivedArch]) -> None:
    """Each architecture as data in the prune run: its record (widths or weights per conv, sizes, the
    pattern) and its sizes as metrics."""
    for arm, d in derived.items():
        tree.client.log_dict(run_id, d.to_dict(), f"architectures/{arm}.json")
        tree.log_metrics(
            run_id,
            {f"{arm}_params": d.params, f"{arm}_macs": d.macs, f"{arm}_size_error": d.error},
        )
