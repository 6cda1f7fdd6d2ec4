"""Arms: how a pruned architecture is trained. An arm is data (a model, a default recipe, callbacks),
not a script; the study layer only changes hyperparameters on top of the default recipe."""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from .budget import scratch_b_epochs
from .errors import UserError
from .flops import forward_flops, nonzero_forward_flops
from .models import ArchSpec, build_model
from .prune import METHODS, KeepMasked, PrunedModel, apply_masks
from .prune.lottery import ticket_model
from .prune.matched import DerivedArch, masks_for
from .train import Callback, TrainConfig, seed_everything

ARMS = (
    "finetune",
    "scratch-e",
    "scratch-b",
    "lottery",
    "unpruned",
    "finetune-random",
    "uniform",
    "guided",
    "transferred",
)
SCRATCH_ARMS = ("scratch", "scratch-e", "scratch-b")  # "scratch": pareto mode's one study for E and B
# The paper's Section 5: other architectures of the pruned one's size, trained from scratch (rethink.prune.matched)
ARCH_ARMS = ("uniform", "guided", "transferred")
# They depend on the base training (its FLOPs are in their pipeline). finetune-random: the control that
# fine-tunes randomly selected channels at the method's widths (built from a `random` PrunedModel).
INHERITING_ARMS = ("finetune", "lottery", "finetune-random")
FINETUNE_EPOCH_FRACTION = 40 / 160  # the paper fine-tunes 40 epochs after a 160-epoch base
FINETUNE_LR_FACTOR = 0.01  # lr 0.001 after a base lr of 0.1, held constant
# The version of each arm builder, raised whenever a fix changes the model or recipe it builds; like the
# methods' versions it enters the digests of the studies and final runs (see code_versions). A scratch arm of
# an unstructured (masked) model has a builder of its own: 2 since its init follows the official code.
ARM_VERSIONS = {
    "finetune": 1,
    "scratch": 1,
    "scratch-unstructured": 2,
    "lottery": 1,
    "unpruned": 1,
    "finetune-random": 1,
    "uniform": 1,
    "guided": 1,
    "transferred": 1,
}


class ArmError(UserError):
    """Unknown arm, or an arm that lacks what it needs (lottery without the base's initial weights)."""


def derive_seed(seed: int, stream: str) -> int:
    """A seed of its own for one random stream (e.g. scratch inits), never the base's `seed` itself: the
    base draws its init from `seed`, so scratch and lottery inits can never coincide."""
    digest = hashlib.sha256(f"{stream}:{seed}".encode()).digest()
    return int.from_bytes(digest[:4], "big") | (1 << 31)  # >= 2**31: above any seed a spec uses


def scratch_init_seed(seed: int) -> int:
    return derive_seed(seed, "scratch-init")


def final_seeds(seed: int, n: int) -> list[int]:
    """The final evaluation's seeds: a stream of their own, so a final run never repeats the search's seed
    (its base, init, data order and augmentation) and the selection's luck is not carried into the test."""
    return [derive_seed(seed, f"final-{s}") for s in range(n)]


def confirm_seeds(seed: int, n: int) -> list[int]:
    """The seeds that confirm a study's top trials before the final evaluation: a stream apart from the
    search's seed and from the final seeds."""
    return [derive_seed(seed, f"confirm-{s}") for s in range(n)]


def confirm_base_seeds(seed: int, n: int) -> list[int]:
    """The seeds of the bases (trained on the search split) that inheriting arms confirm their picks on: a
    stream apart from the search's, the confirmation runs' and the final seeds."""
    return [derive_seed(seed, f"confirm-base-{s}") for s in range(n)]


def builder_key(arm: str, structured: bool) -> str:
    """Which entry of ARM_VERSIONS builds `arm` from a pruned model that is (or is not) structured."""
    if arm in SCRATCH_ARMS:
        return "scratch" if structured else "scratch-unstructured"
    return arm


def code_versions(method: str, arms: Iterable[str]) -> dict[str, int]:
    """The versions of the code that makes a setting's results: its method and the builders of its arms.
    Versions of 1 are left out, so the digests made before versions existed stay valid."""
    structured = METHODS[method].structured
    versions = {f"method:{method}": METHODS[method].version}
    for arm in arms:
        key = builder_key(arm, structured)
        versions[f"arm:{key}"] = ARM_VERSIONS[key]
    return {k: v for k, v in sorted(versions.items()) if v > 1}


@torch.no_grad()
def official_masked_init(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """A scratch init of a weight-level pruned model as the official code draws it (Eric-mingjie/
    rethinking-network-pruning, cifar/weight-level/cifar_E.py and cifar_B.py): each masked conv from
    N(0, 2/n), n = its kept weights / in_channels, then masked. The dense init masked would be sqrt(1/density)
    times too small (3.2x at 90% pruned)."""
    for name, module in model.named_modules():
        mask = masks.get(f"{name}.weight")
        if isinstance(module, nn.Conv2d) and mask is not None:
            n = float(mask.sum()) / module.in_channels
            if n > 0:
                module.weight.normal_(0, math.sqrt(2.0 / n))
            module.weight.mul_(mask.to(module.weight.device, module.weight.dtype))


@dataclass(eq=False)
class Arm:
    name: str
    model: nn.Module
    config: TrainConfig  # the arm's default recipe (the paper's)
    callbacks: list[Callback] = field(default_factory=list)
    forward_macs: int = 0  # one image's forward MACs of the model trained (non-zero only when unstructured)
    inherits_base: bool = False  # trained from the base's weights: the base training is in its pipeline FLOPs


def pruned_flops(pruned: PrunedModel) -> int:
    shape = (pruned.spec.in_channels, pruned.spec.input_size, pruned.spec.input_size)
    count = forward_flops if pruned.structured else nonzero_forward_flops
    return count(pruned.model, shape)


def check_arm(arm: str) -> None:
    if arm not in ARMS and arm not in SCRATCH_ARMS:
        raise ArmError(f"unknown arm {arm!r}; valid names: {', '.join(ARMS)}")


def arm_epochs(arm: str, base: TrainConfig, base_flops: float, pruned_flops_: float) -> int:
    if arm.startswith("finetune"):
        return max(1, round(base.epochs * FINETUNE_EPOCH_FRACTION))
    if arm == "scratch-b":
        return scratch_b_epochs(base.epochs, base_flops, pruned_flops_)
    return base.epochs


def default_recipe(arm: str, base: TrainConfig, base_flops: float, pruned_flops_: float) -> TrainConfig:
    """The paper's recipe for the arm: fine-tune at lr/100 held constant; scratch (and unpruned) at the
    base recipe for E or B epochs, with the milestones at the same fractions."""
    check_arm(arm)
    epochs = arm_epochs(arm, base, base_flops, pruned_flops_)
    if arm.startswith("finetune"):
        return replace(base, epochs=epochs, lr=base.lr * FINETUNE_LR_FACTOR, schedule="constant")
    return replace(base, epochs=epochs)


def build_arm(
    arm: str,
    pruned: PrunedModel,
    base_spec: ArchSpec,
    base_config: TrainConfig,
    base_flops: float,
    seed: int = 0,
    init_state: dict[str, torch.Tensor] | None = None,
    pruned_macs: int | None = None,
    derived: DerivedArch | None = None,
) -> Arm:
    """The model to train and its default recipe. Scratch arms (and the tuned unpruned arm) draw a fresh
    init from a seed stream of their own (`scratch_init_seed(seed)`), never the base's; for unstructured
    pruning they keep the masks, re-applied after every step. `seed` also orders the data.
    `pruned_macs` saves a recount. The architecture arms train `derived` (of the pruned model's size)."""
    if arm in ARCH_ARMS:
        return _arch_arm(arm, derived, base_config, seed)
    macs = pruned_macs or pruned_flops(pruned)
    config = default_recipe(arm, base_config, base_flops, macs)
    callbacks: list[Callback] = [] if pruned.masks is None else [KeepMasked(pruned.masks)]
    if arm.startswith("finetune"):  # finetune-random: `pruned` is the random selection
        model = copy.deepcopy(pruned.model)
    elif arm == "lottery":
        if init_state is None:
            raise ArmError("the lottery arm needs the base model's initial (or rewound) weights")
        model = ticket_model(pruned, base_spec, init_state)
    elif arm == "unpruned":
        seed_everything(scratch_init_seed(seed))
        model, callbacks, macs = build_model(base_spec), [], int(base_flops)
    else:
        seed_everything(scratch_init_seed(seed))
        model = build_model(pruned.spec)
        if pruned.masks is not None:
            official_masked_init(model, pruned.masks)
            apply_masks(model, pruned.masks)
    return Arm(arm, model, replace(config, seed=seed), callbacks, macs, arm in INHERITING_ARMS)


def _arch_arm(arm: str, derived: DerivedArch | None, base_config: TrainConfig, seed: int) -> Arm:
    """An architecture arm: `derived` from a fresh scratch init (as Scratch-E draws it); an unstructured one
    with its non-zero weights at places drawn from a stream of their own, held by masks."""
    if derived is None:
        raise ArmError(f"the {arm} arm needs its architecture (rethink.prune.matched.derive)")
    seed_everything(scratch_init_seed(seed))
    model = build_model(derived.spec)
    callbacks: list[Callback] = []
    if (masks := masks_for(derived, derive_seed(seed, f"{arm}-mask"))) is not None:
        official_masked_init(model, masks)
        apply_masks(model, masks)
        callbacks.append(KeepMasked(masks))
    return Arm(arm, model, replace(base_config, seed=seed), callbacks, derived.macs, False)
