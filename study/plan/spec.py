"""The schema of a spec (a TOML file in study/specs/), validated on load with errors naming the field: its
top-level fields, its tables (training_tables.py, study_tables.py), the checks across them (spec_checks.py)
and the digests that name its studies, runs and checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from rethink.arms import code_versions
from rethink.errors import UserError
from rethink.models import MODELS, ModelError
from rethink.models.external import check_name, is_external
from rethink.splits import NORMALIZATIONS
from rethink.train import config_digest

from .spec_checks import CrossTableChecks
from .study_tables import ArchArms, Final, Select, Study, Verdict
from .training_tables import LITERATURE, Baseline, BaseTraining, Proxy, Pruning, SearchSpace, StrictTable, one_of

SPECS_DIR = Path(__file__).parent.parent / "specs"


class SpecError(UserError):
    """A spec that does not validate; the message names the file and every bad field."""


def _model_name(v: str) -> str:
    """A registry model, or a library one (timm:NAME, torchvision:NAME) that its library knows."""
    if v in MODELS:
        return v
    if not is_external(v):
        raise ValueError(
            f"unknown model {v!r}; valid names: {', '.join(sorted(MODELS))}, or timm:NAME / torchvision:NAME"
        )
    try:
        check_name(v)
    except ModelError as e:
        raise ValueError(str(e)) from None
    return v


class Spec(StrictTable, CrossTableChecks):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    paper_row: str | None = Field(
        None,
        description="the published row beside this spec's results (study/specs/paper_numbers.csv), when "
        "DATASET/METHOD/MODEL/SETTING does not name it",
    )
    dataset: str = "digits"
    data_root: str = "data"
    val_fraction: float = Field(0.1, gt=0, lt=1)
    model: Annotated[str, AfterValidator(_model_name)] = "vgg11"
    model_args: dict[str, Any] = Field(
        {}, description="a library model's constructor arguments (e.g. img_size, patch_size for a ViT)"
    )
    width_scale: float = Field(1.0, gt=0)
    # VGG: "bn-mlp" (Li et al.) or "linear" (the slimming and weight-level code); ImageNet VGGs: "torchvision",
    # "slimming" or "gap" (ThiNet's VGG-GAP/-Tiny head)
    classifier: str = "default"
    bn_init: float = Field(1.0, gt=0)  # conv BN scale at init: 0.5 in the official slimming and L1-norm VGGs
    conv_init: str = "default"  # VGG: "weight-level" = the weight-level code's convs (bias, He init over fan-in)
    normalize: Annotated[str, one_of("normalization", NORMALIZATIONS)] = "split"
    seed: int = Field(0, ge=0)
    weights: str | None = Field(
        None,
        description="a local weights file the base starts from (the base is not trained; every final seed and "
        "every confirmation shares it): a state dict saved by torch.save, or .safetensors",
    )
    weights_sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="the weights file's SHA-256: pinned, or filled in on load"
    )
    base: BaseTraining = BaseTraining()
    prune: Pruning = Pruning(ratio=0.5)
    study: Study = Study()
    space: SearchSpace = SearchSpace()
    baselines: dict[str, Baseline] = {"literature": LITERATURE}
    select: Select = Select()
    final: Final = Final()
    verdict: Verdict = Verdict()
    arch: ArchArms = ArchArms()
    proxy: Proxy | None = None

    @model_validator(mode="before")
    @classmethod
    def _weights_share_one_base(cls, data: Any) -> Any:
        """A base from a file is the only base: every final seed and every confirmation run inherits it."""
        if not isinstance(data, dict) or not data.get("weights"):
            return data
        final, select = dict(data.get("final") or {}), dict(data.get("select") or {})
        if final.get("share_base") is False:
            raise ValueError("final.share_base = false: a base from weights is the only base; drop the field")
        if select.get("bases"):
            raise ValueError(
                f"select.bases = {select['bases']}: a base from weights is the only base; drop the field (0 is implied)"
            )
        return data | {"final": final | {"share_base": True}, "select": select | {"bases": 0}}

    @model_validator(mode="after")
    def _consistent(self):
        self._check_across_tables()
        return self

    def levels(self) -> list[Spec]:
        """The settings this spec stands for: itself, or one per `prune.ratios` entry (named NAME-rRATIO),
        each with its own studies, runs and report."""
        if not self.prune.ratios:
            return [self]
        return [
            self.model_copy(
                update={
                    "name": f"{self.name}-r{r:g}",
                    "prune": self.prune.model_copy(update={"ratio": r, "ratios": None}),
                }
            )
            for r in self.prune.ratios
        ]

    def dump(self, **kwargs) -> dict[str, Any]:
        """model_dump(mode="json") without the later fields that hold their defaults (see LATER_FIELDS)."""
        d = self.model_dump(mode="json", **kwargs)
        for path, default in LATER_FIELDS.items():
            *parents, key = path
            node = d
            for p in parents:
                node = node.get(p, {})
            if key in node and node[key] == default:
                del node[key]
        for table in LATER_TABLES:
            if d.get(table) == {}:
                del d[table]
        return d

    def code_versions(self) -> dict[str, int]:
        """Versions (above 1) of the method and arm builders that make this setting's results."""
        return code_versions(self.prune.method, self.study.arms)

    def _with_versions(self, d: dict[str, Any]) -> dict[str, Any]:
        """`d` plus the code versions, when any is above 1 (so older digests stay as they were)."""
        versions = self.code_versions()
        return {**d, "code_versions": versions} if versions else d

    def digest(self) -> str:
        return config_digest(self._with_versions(self.dump(exclude=METADATA | WHERE)))

    def base_digest(self) -> str:
        keys = {"dataset", "val_fraction", "model", "width_scale", "classifier", "bn_init", "conv_init", "normalize"}
        keys |= {"seed", "base", "model_args", "weights_sha256"}
        d = self.dump(include=keys)
        trains_with_method = self.base.sparsity > 0 or self.base.sfp_ratio is not None  # slimming's L1, SFP
        version = code_versions(self.prune.method, ()).get(f"method:{self.prune.method}")
        if trains_with_method and version:
            d["method_version"] = version
        return config_digest(d)

    def study_fields(self) -> dict[str, Any]:
        """The fields that define a study's trials: a change here (the code versions included) makes old
        trials incomparable; the studies are then refused, naming it, until --new-study starts new ones."""
        fields = self.dump(exclude={*METADATA, *WHERE, "final", "data_root", "verdict", "select"})
        fields["study"].pop("n_trials")  # a larger budget continues the same studies
        return self._with_versions(fields)


METADATA = {"description", "paper_row"}  # what a spec says about itself: no part of any digest
WHERE = {"weights"}  # where a file lies (its content is weights_sha256): no part of any digest

# Fields added after specs were first digested. Holding their defaults they are left out of digests and
# study fields, so the studies, runs and checkpoints of specs written before them stay valid.
LATER_FIELDS: dict[tuple[str, ...], Any] = {
    ("classifier",): "default",
    ("bn_init",): 1.0,
    ("conv_init",): "default",
    ("verdict", "min_seeds"): 2,
    ("verdict", "primary"): "1@B",
    ("normalize",): "split",
    ("base", "sfp_ratio"): None,
    ("base", "gamma"): 0.1,
    ("select", "top_k"): 3,
    ("select", "seeds"): 2,
    ("select", "bases"): None,
    ("prune", "rounds"): 1,
    ("verdict", "arch_margin"): 0.0,
    ("arch", "match"): "params",
    ("arch", "tolerance"): 0.01,
    ("arch", "pattern_from"): None,
    ("proxy",): None,
    ("model_args",): {},
    ("prune", "criterion"): None,
    ("prune", "group_reduction"): "mean",
    ("prune", "max_ratio"): 1.0,
    ("prune", "round_to"): None,
    ("prune", "steps"): 1,
    ("prune", "ignore"): [],
    ("prune", "calibration_images"): 256,
    ("weights_sha256",): None,
    ("base", "optimizer"): "sgd",
    ("base", "label_smoothing"): 0.0,
    ("base", "mixup"): 0.0,
    ("base", "cutmix"): 0.0,
    ("base", "erasing"): 0.0,
}
LATER_TABLES = ("select", "arch")  # left out of digests when every field in them holds its default
