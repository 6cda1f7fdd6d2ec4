"""The schema of a spec (a TOML file in study/specs/), validated on load with errors naming the field."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from rethink.arms import ARCH_ARMS, ARMS, code_versions
from rethink.augment import AUGMENTATIONS
from rethink.budget import SCHEDULES
from rethink.data import NORMALIZATIONS, DataError, is_folder, normalization
from rethink.errors import UserError
from rethink.imagefolder import FOLDER_UNSUPPORTED
from rethink.models import MODELS, ModelError, model_entry
from rethink.models.external import check_name, is_external
from rethink.prune import METHODS, VARIANTS, variants_of
from rethink.prune.depgraph import CRITERIA, REDUCTIONS
from rethink.train import TrainConfig, config_digest

SPECS_DIR = Path(__file__).parent.parent / "specs"


class SpecError(UserError):
    """A spec that does not validate; the message names the file and every bad field."""


def one_of(kind: str, names: Iterable[str]) -> AfterValidator:
    """A field holding a name from a registry; a bad name is reported with the valid ones."""
    valid = tuple(names)

    def check(v: str) -> str:
        if v not in valid:
            raise ValueError(f"unknown {kind} {v!r}; valid names: {', '.join(sorted(valid))}")
        return v

    return AfterValidator(check)


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


Arm = Annotated[str, one_of("arm", ARMS)]
Augmentation = Annotated[str, one_of("augmentation", AUGMENTATIONS)]
Schedule = Annotated[str, one_of("schedule", SCHEDULES)]
BUILTIN_BASELINES = ("paper", "rewind")  # defined per arm from the base recipe (study/baselines.py)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseTraining(_Strict):
    """The base model's recipe (TrainConfig fields); defaults are the paper's."""

    epochs: int = Field(160, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Schedule = "step"
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = Field(0.1, gt=0, le=1, description="step schedule: lr factor at each milestone")
    augment: Augmentation = "crop-flip"
    optimizer: Literal["sgd", "adamw"] = Field(
        "sgd", description="adamw: momentum is beta1; weight decay decoupled, on weights of 2+ dimensions only"
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    mixup: float = Field(0.0, ge=0, description="Beta α of mixup (timm's recipes: 0.8); 0: off")
    cutmix: float = Field(0.0, ge=0, description="Beta α of CutMix (timm's recipes: 1.0); with mixup, one per batch")
    erasing: float = Field(0.0, ge=0, le=1, description="share of images given a random-erasing box (DeiT 0.25)")
    sparsity: float = Field(0.0, ge=0, description="Network Slimming L1 strength on BN scales")
    sfp_ratio: float | None = Field(
        None, ge=0, lt=1, description="Soft Filter Pruning: share of every conv's filters zeroed after each epoch"
    )

    @model_validator(mode="after")
    def _optimizer_options(self):
        if self.optimizer == "adamw" and self.nesterov:
            raise ValueError("nesterov is SGD's; AdamW has none: set nesterov = false")
        return self

    def train_config(self, seed: int) -> TrainConfig:
        fields = self.model_dump(exclude={"sparsity", "sfp_ratio"})
        return TrainConfig(**fields, seed=seed)


class Pruning(_Strict):
    method: Annotated[str, one_of("method", METHODS)] = "l1-norm"
    ratio: float | None = Field(None, ge=0, lt=1)
    ratios: tuple[Annotated[float, Field(ge=0, lt=1)], ...] | None = None  # operating points: a setting each
    variant: Annotated[str, one_of("variant", VARIANTS)] | None = None
    min_channels: int = Field(1, ge=0)
    scope: Literal["global", "layer", "local"] = "global"  # local: Torch-Pruning's word for layer
    like: Annotated[str, one_of("method", METHODS)] | None = None  # random: whose widths it copies
    # depgraph (library models, Torch-Pruning): see rethink.prune.PruneConfig
    criterion: Annotated[str, one_of("criterion", CRITERIA)] | None = None
    group_reduction: Annotated[str, one_of("group_reduction", REDUCTIONS)] = "mean"
    max_ratio: float = Field(1.0, gt=0, le=1, description="depgraph: the most of any layer's channels removed")
    round_to: int | None = Field(None, ge=1, description="depgraph: channel counts rounded to a multiple")
    steps: int = Field(1, ge=1, le=100, description="depgraph: pruning steps to reach the ratio")
    ignore: tuple[str, ...] = Field((), description="depgraph: layer names (fnmatch patterns) left unpruned")
    rounds: int = Field(
        1, ge=1, le=30, description="iterative magnitude pruning: prune, rewind to init, retrain; `rounds` times"
    )
    calibration_images: int = Field(
        256, ge=1, description="thinet, depgraph taylor/hessian: training images the criterion is computed on"
    )

    @field_validator("scope")
    @classmethod
    def _one_word_for_per_layer(cls, v):
        return "layer" if v == "local" else v  # one spelling, one digest

    @field_validator("ratios")
    @classmethod
    def _no_empty_list(cls, v):
        return v or None  # [] means no operating points (worker command lines of one level say so)

    @model_validator(mode="after")
    def _ratio_or_variant(self):
        if self.ratios is not None:
            if len(set(self.ratios)) != len(self.ratios):
                raise ValueError(f"prune.ratios repeat: {list(self.ratios)}")
            if self.variant is not None:
                raise ValueError("prune.ratios and prune.variant exclude each other")
        elif self.ratio is None and self.variant is None:
            raise ValueError("give a ratio, a list of ratios or a variant")
        if not METHODS[self.method].inherits and self.variant is None:
            raise ValueError(f"prune.method {self.method!r} names its architecture in prune.variant; give one")
        if self.like is not None and not METHODS[self.like].inherits:
            raise ValueError(f"prune.like {self.like!r} keeps no channels whose widths random could copy")
        graph_only = {"criterion": None, "group_reduction": "mean", "max_ratio": 1.0, "round_to": None, "steps": 1,
                      "ignore": ()}  # fmt: skip
        set_here = [k for k, v in graph_only.items() if getattr(self, k) != v]
        if set_here and self.method != "depgraph" and not (self.method == "random" and self.like == "depgraph"):
            raise ValueError(f"prune.{set_here[0]} is a depgraph option; prune.method is {self.method!r}")
        if self.calibration_images != 256 and self.method not in ("thinet", "depgraph"):
            raise ValueError(
                f"prune.calibration_images is for thinet and depgraph's taylor / hessian; {self.method!r} reads none"
            )
        if self.rounds > 1 and METHODS[self.method].structured:
            raise ValueError(
                f"prune.rounds = {self.rounds}: iterative pruning is for unstructured magnitude pruning; use "
                f"method 'magnitude' (or 'lottery') or rounds = 1"
            )
        return self


class FloatRange(_Strict):
    low: float
    high: float
    log: bool = True

    @model_validator(mode="after")
    def _non_empty(self):
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ValueError(f"empty or non-finite range [{self.low}, {self.high}]: low must be below high")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        return self


class IntRange(_Strict):
    """Epochs in absolute numbers. `log`: unset means uniform in capped mode (no prior toward short runs)
    and log-uniform in pareto mode (its front spans orders of magnitude of compute)."""

    low: int = Field(ge=1)
    high: int
    log: bool | None = None

    @model_validator(mode="after")
    def _non_empty(self):
        if self.low > self.high:
            raise ValueError(f"empty range [{self.low}, {self.high}]: low must not exceed high")
        return self


class CapFraction(_Strict):
    """Epochs from a fraction of each study's cap up to the cap itself (capped mode): [ceil(low × cap),
    cap], uniform unless `log`. The default searches from a tenth of the cap."""

    of: Literal["cap"]
    low: float = Field(gt=0, le=1)
    log: bool = False

    def bounds(self, cap: int) -> tuple[int, int]:
        return min(cap, max(1, math.ceil(self.low * cap - 1e-9))), cap


EpochRange = IntRange | CapFraction
DEFAULT_EPOCHS = CapFraction(of="cap", low=0.1)


class SearchSpace(_Strict):
    """The same space for every arm: lr (log), lr schedule shape and augmentation (categorical), epoch
    budget (int, log); optional weight decay and batch size apply to every arm alike."""

    lr: FloatRange = FloatRange(low=1e-3, high=0.3)
    schedule: tuple[Schedule, ...] = Field(SCHEDULES, min_length=1)
    augment: tuple[Augmentation, ...] = Field(AUGMENTATIONS, min_length=1)
    epochs: EpochRange = DEFAULT_EPOCHS
    weight_decay: FloatRange | None = None
    batch_size: tuple[Annotated[int, Field(ge=1)], ...] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _positive(self):
        if self.lr.low <= 0:
            raise ValueError(f"lr.low must be > 0 (a learning rate), got {self.lr.low}")
        if self.weight_decay is not None and self.weight_decay.low < 0:
            raise ValueError(f"weight_decay.low must be >= 0, got {self.weight_decay.low}")
        return self


class Proxy(_Strict):
    """Searched trials (and their baselines) run on a cheaper task, with the hpo pruner (successive halving
    on per-epoch validation accuracy) stopping the weak ones; each study's top trials are then confirmed at
    full scale (select.top_k on select.seeds seeds), and the report gives the proxy's rank correlation with
    full scale on them (Kendall's tau)."""

    classes: int | None = Field(None, ge=2, description="a seeded subset of this many classes (default: all)")
    resolution: int | None = Field(None, ge=4, description="image side the proxy trains at (default: the data's)")
    epochs: float = Field(1.0, gt=0, le=1, description="share of each trial's epochs the proxy trains")


class Baseline(_Strict):
    """A named fixed config enqueued on top of a study's searched trials. `epochs`: an int, or 'E' (base
    epochs), 'B' (Scratch-B epochs) or 'default' (the arm's own). Unset fields take the arm's paper recipe.
    `source` says what it stands for; the report prints it."""

    source: str = ""
    lr: float | None = Field(None, gt=0)
    schedule: Schedule | None = None
    augment: Augmentation | None = None
    epochs: Annotated[int, Field(ge=1)] | Literal["E", "B", "default"] = "default"
    weight_decay: float | None = Field(None, ge=0)
    batch_size: int | None = Field(None, ge=1)
    arms: tuple[Arm, ...] | None = None  # the arms it applies to (default: all)


class Study(_Strict):
    arms: tuple[Arm, ...] = Field(("finetune", "scratch-e", "scratch-b"), min_length=1)
    n_trials: int = Field(8, ge=1, description="searched (sampled) trials per study; baselines come on top")
    # capped: one study per arm and budget judged, epochs searched up to that budget's cap, validation
    # accuracy the one objective. pareto: one study per arm, accuracy and training FLOPs both objectives.
    # fixed-budget: each arm at its paper epochs, the rest searched.
    mode: Literal["capped", "pareto", "fixed-budget"] = "capped"
    sampler: Literal["tpe", "random", "nsga2"] = "tpe"
    seed: int = Field(0, ge=0)
    hpo_pruner: Literal["hyperband", "median", "none"] = "hyperband"
    baselines: tuple[str, ...] = ("paper", "rewind", "literature")

    @field_validator("arms")
    @classmethod
    def _distinct_arms(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            raise ValueError(f"arms repeat: {list(v)}")
        return v


class Verdict(_Strict):
    """The pre-registered analysis: part of the spec's digest and recorded in each study when it is made;
    anything else chosen at report time is labelled post hoc."""

    margin: float = Field(0.5, ge=0, lt=100, description="non-inferiority margin, in accuracy points")
    # one-sided confidence of the non-inferiority bound: 0.975 (alpha = 0.025, the lower end of a two-sided 95%
    # interval), the usual non-inferiority convention
    confidence: float = Field(0.975, gt=0.5, lt=1)
    budgets: tuple[Literal["E", "B", "P"], ...] = Field(("E", "B", "P"), min_length=1)
    min_seeds: int = Field(2, ge=2, description="an arm with fewer final seeds is inconclusive (too few seeds)")
    primary: Literal["1@E", "1@B", "1@P", "2", "3", "4@E", "4@B", "4@P"] = Field(
        "1@B", description="the one primary comparison (claim 1 at budget B: the paper's headline); the rest Holm"
    )
    arch_margin: float = Field(
        0.0, ge=0, lt=100, description="claim 4: accuracy points the pruned architecture must beat uniform by"
    )

    @model_validator(mode="after")
    def _primary_is_judged(self):
        if "@" in self.primary and self.primary[2:] not in self.budgets:
            raise ValueError(
                f"primary {self.primary!r} is a budget the verdicts do not judge (budgets {list(self.budgets)}); "
                f"add {self.primary[2:]!r} to verdict.budgets or name another primary"
            )
        return self

    @property
    def margin_fraction(self) -> float:
        return self.margin / 100


class Select(_Strict):
    """Picks confirmed before the final evaluation: each study's top_k trials train again on `seeds` more
    seeds (same train/validation split); a row's pick is the best mean validation accuracy. Arms that
    inherit a base (fine-tune, lottery, the random control) confirm on `bases` other bases too, as the final
    evaluation varies the base: confirmation seed i fine-tunes from base i mod `bases`."""

    top_k: int = Field(3, ge=1)
    seeds: int = Field(2, ge=0, description="confirmation seeds per candidate; 0 picks on the search's seed alone")
    bases: int | None = Field(
        None,
        ge=0,
        description="bases (trained on the search split, each its own seed) the inheriting arms confirm on; "
        "default: one per confirmation seed; 0: every confirmation run on the search's base",
    )

    @model_validator(mode="after")
    def _bases_fit_seeds(self):
        if self.bases is not None and self.bases > self.seeds:
            raise ValueError(
                f"select.bases ({self.bases}) exceeds select.seeds ({self.seeds}): each confirmation run "
                f"fine-tunes from one base; set select.bases <= {self.seeds} or raise select.seeds"
            )
        return self

    @property
    def n_bases(self) -> int:
        """Confirmation bases besides the search's: `bases`, by default one per confirmation seed."""
        return self.seeds if self.bases is None else self.bases


class Final(_Strict):
    seeds: int = Field(3, ge=1)
    share_base: bool = False  # one base for every seed (saves compute; the report says so in a caveat)


LITERATURE = Baseline(
    source="the weaker scratch recipe of earlier pruning work (lr 0.01, flip only, E epochs), standing for the "
    "untuned scratch baselines that Liu et al. 2019 say made scratch training look worse than fine-tuning",
    lr=0.01,
    augment="flip",
    epochs="E",
    arms=("scratch-e", "scratch-b"),
)


class ArchArms(_Strict):
    """The paper's Section 5 arms (`uniform`, `guided`, `transferred`): how their size is matched to the
    pruned architecture's, and where `transferred` takes its layer pattern from."""

    match: Literal["params", "flops"] = "params"
    tolerance: float = Field(0.01, gt=0, le=0.1, description="largest relative size difference from the pruned one")
    pattern_from: str | None = Field(
        None,
        description="transferred: the spec (shipped name or TOML path) whose pruned architecture's pattern it takes",
    )


class Spec(_Strict):
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
        if self.prune.variant:
            variant = VARIANTS[self.prune.variant]
            owner = self.prune.method if self.prune.method != "random" else (self.prune.like or "l1-norm")
            if variant.method != owner:
                own = ", ".join(variants_of(owner)) or "none"
                raise ValueError(
                    f"prune.variant {self.prune.variant!r} is a {variant.method} layout and prune.method prunes "
                    f"with {owner}; {owner}'s variants: {own}"
                )
            if variant.model != self.model:
                raise ValueError(f"prune.variant {self.prune.variant!r} is for {variant.model}")
        entry = model_entry(self.model)
        if entry.family not in METHODS[self.prune.method].families:
            valid = ", ".join(m for m, e in METHODS.items() if entry.family in e.families)
            raise ValueError(f"prune.method {self.prune.method!r} does not support {self.model}; valid: {valid}")
        if METHODS[self.prune.method].needs_bn and not entry.batch_norm:
            valid = ", ".join(m for m, e in METHODS.items() if entry.family in e.families and not e.needs_bn)
            raise ValueError(
                f"prune.method {self.prune.method!r} ranks BN scales and {self.model} has none; valid: {valid}"
            )
        if self.base.sparsity > 0 and not entry.batch_norm:
            raise ValueError(f"base.sparsity is an L1 penalty on BN scales; {self.model} has no BN: set it to 0")
        if entry.family == "external":
            self._check_library_model()
        elif self.model_args:
            raise ValueError(f"model_args are for library models (timm:NAME, torchvision:NAME), not {self.model}")
        if self.classifier != "default" and self.classifier not in entry.classifiers:
            offered = ", ".join(entry.classifiers) or "none (the model has one head)"
            raise ValueError(f"classifier {self.classifier!r} does not fit {self.model}; valid: {offered}")
        if self.conv_init != "default" and self.conv_init not in entry.conv_inits:
            offered = ", ".join(entry.conv_inits) or "none (only its own)"
            raise ValueError(f"conv_init {self.conv_init!r} does not fit {self.model}; valid: {offered}")
        try:
            normalization(self.normalize, self.dataset)
        except DataError as e:
            raise ValueError(str(e)) from None
        if is_folder(self.dataset):
            self._check_folder()
        if self.proxy is not None:
            self._check_proxy()
        self._check_sfp()
        missing = [b for b in self.study.baselines if b not in BUILTIN_BASELINES and b not in self.baselines]
        if missing:
            raise ValueError(f"study.baselines names {missing}, which [baselines] does not define")
        if clash := sorted(set(self.baselines) & set(BUILTIN_BASELINES)):
            raise ValueError(f"baselines.{clash[0]}: a built-in baseline; give yours another name")
        self._check_baselines_fit_space()
        if isinstance(self.space.epochs, CapFraction) and self.study.mode != "capped":
            raise ValueError(
                f"space.epochs: a fraction of the cap needs study.mode = 'capped' ({self.study.mode!r} has no "
                f"cap per study); give epochs = {{ low = 2, high = N }} in epochs"
            )
        self._check_arch_arms()
        self._check_weights()
        self._check_inheriting_arms()
        if "lottery" in self.study.arms and self.prune.method not in ("lottery", "magnitude", "l1-norm"):
            raise ValueError(
                f"study.arms: the lottery arm needs a method that keeps the base's init (magnitude, lottery or "
                f"l1-norm), not {self.prune.method!r}; drop 'lottery' from study.arms or change prune.method"
            )
        return self

    def _check_inheriting_arms(self) -> None:
        """A method that gives an architecture only (predefined) leaves nothing to fine-tune or copy."""
        method = self.prune.method
        if METHODS[method].inherits:
            return
        if inheriting := [a for a in self.study.arms if a in ("finetune", "finetune-random")]:
            raise ValueError(
                f"study.arms: {inheriting[0]!r} starts from the pruned model's trained weights, and prune.method "
                f"{method!r} gives an architecture only; drop it (the published fine-tuned number, where a source "
                f"states it, is set beside the scratch arms from study/specs/paper_numbers.csv)"
            )

    def _check_weights(self) -> None:
        """A base loaded from a file is not trained here: nothing that shapes its training or rewinds it."""
        if self.weights is None:
            if self.weights_sha256 is not None:
                raise ValueError("weights_sha256 is set but weights is not; name the file it pins")
            return
        trained = [f for f, on in (("base.sparsity", self.base.sparsity > 0), ("base.sfp_ratio", self.base.sfp_ratio
                   is not None)) if on]  # fmt: skip
        if trained:
            raise ValueError(f"{trained[0]} shapes the base's training, and a base from weights is not trained here")
        if "lottery" in self.study.arms:
            raise ValueError("study.arms: the lottery arm rewinds to the base's init, which a weights file lacks")
        if self.prune.rounds > 1:
            raise ValueError("prune.rounds: iterative pruning rewinds to the base's init, which a weights file lacks")

    def _check_library_model(self) -> None:
        """A library model comes as its library builds it: no width scaling, no BN re-initialisation."""
        for field, default in (("width_scale", 1.0), ("bn_init", 1.0)):
            if getattr(self, field) != default:
                raise ValueError(f"{field} is for the registry's models; {self.model} is built as its library does")
        if "transferred" in self.study.arms:
            raise ValueError(
                "study.arms: the transferred arm needs another network's stages matched to this one's, which is "
                "built for the registry's models only; drop it (uniform and guided are built for library models)"
            )

    def _check_arch_arms(self) -> None:
        """Section 5's arms: studied at budgets (capped or pareto), `transferred` with a pattern to take."""
        arch = [a for a in self.study.arms if a in ARCH_ARMS]
        if arch and self.study.mode == "fixed-budget":
            raise ValueError(
                f"study.mode = 'fixed-budget' has no budgets for the {arch[0]} arm to be matched at; use 'capped' "
                f"or 'pareto'"
            )
        if "transferred" in arch and not self.arch.pattern_from:
            raise ValueError(
                "arch.pattern_from: the transferred arm takes the layer pattern of another spec's pruned "
                "architecture; name that spec (e.g. pattern_from = 'cifar10-l1-vgg16-a')"
            )
        if self.arch.pattern_from and "transferred" not in arch:
            raise ValueError("arch.pattern_from is set but study.arms has no 'transferred'; add it or drop the field")
        if self.verdict.primary.startswith("4@") and "uniform" not in arch:
            raise ValueError(
                f"verdict.primary = {self.verdict.primary!r} is claim 4, which needs the 'uniform' arm in study.arms"
            )
        if self.arch.pattern_from in (self.name, f"{self.name}.toml"):
            raise ValueError("arch.pattern_from names this spec: a transferred pattern comes from another one")

    def _check_proxy(self) -> None:
        """A proxy's picks must be confirmed at full scale, and there must be ranks to correlate."""
        if self.study.mode == "pareto":
            raise ValueError(
                "proxy: pareto mode scores training FLOPs, which a proxy changes; use study.mode = 'capped'"
            )
        if self.select.seeds < 1 or self.select.top_k < 2:
            raise ValueError(
                f"proxy: each study's top trials are confirmed at full scale: set select.top_k >= 2 (now "
                f"{self.select.top_k}) and select.seeds >= 1 (now {self.select.seeds})"
            )

    def _check_folder(self) -> None:
        """An image folder is decoded batch by batch: fixed normalization constants, no cutout."""
        if self.normalize == "split":
            raise ValueError(
                f'normalize = "split" needs the images in memory; the image folder {self.dataset!r} takes fixed '
                f'constants: set normalize = "imagenet"'
            )
        cutout = [f for f, a in (("base.augment", (self.base.augment,)), ("space.augment", self.space.augment))
                  if FOLDER_UNSUPPORTED in a]  # fmt: skip
        if cutout:
            raise ValueError(
                f"{cutout[0]}: {FOLDER_UNSUPPORTED!r} is not available on image folders (their crop is "
                f"RandomResizedCrop); use 'crop-flip', 'flip' or 'none'"
            )

    def _check_sfp(self) -> None:
        """Soft Filter Pruning is a training procedure: its base trains with the ratio it prunes at."""
        sfp, ratio = self.base.sfp_ratio, self.prune.ratio
        if self.prune.method == "sfp":
            if self.prune.ratios is not None:
                raise ValueError("prune.ratios: sfp trains its base at one ratio; write one spec per ratio")
            if sfp is None or ratio is None or not math.isclose(sfp, ratio):
                raise ValueError(
                    f"base.sfp_ratio ({sfp}) must equal prune.ratio ({ratio}) for method 'sfp': soft filter pruning "
                    f"zeroes that share of filters while the base trains; set base.sfp_ratio = {ratio}"
                )
        elif sfp is not None:
            raise ValueError(f"base.sfp_ratio is set but prune.method is {self.prune.method!r}; it belongs to 'sfp'")

    def _check_baselines_fit_space(self) -> None:
        """Every enqueued baseline's categorical values must be choices of the space (Optuna refuses others)."""
        space, base = self.space, self.base
        need: list[tuple[str, str, str, tuple]] = []  # (where, field, value, choices)
        if "paper" in self.study.baselines or "rewind" in self.study.baselines:
            need.append(("base.augment (the paper and rewind baselines)", "augment", base.augment, space.augment))
            need.append(("base.schedule (the paper and rewind baselines)", "schedule", base.schedule, space.schedule))
            if "finetune" in self.study.arms and "paper" in self.study.baselines:
                need.append(("the fine-tune paper baseline", "schedule", "constant", space.schedule))
        for name in self.study.baselines:
            b = self.baselines.get(name)
            if b is not None:
                need.append((f"baselines.{name}.augment", "augment", b.augment or base.augment, space.augment))
                need.append((f"baselines.{name}.schedule", "schedule", b.schedule or base.schedule, space.schedule))
                if space.batch_size is not None and b.batch_size is not None:
                    need.append((f"baselines.{name}.batch_size", "batch_size", b.batch_size, space.batch_size))
        if space.batch_size is not None:
            need.append(("base.batch_size", "batch_size", base.batch_size, space.batch_size))
        for where, fld, value, choices in need:
            if value not in choices:
                raise ValueError(
                    f"{where}: {value!r} is not in space.{fld} {list(choices)}; add it to space.{fld} "
                    f"(a baseline must be a point of the searched space)"
                )

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
