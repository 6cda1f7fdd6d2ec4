"""The checks of a spec that span its tables (a method and the model it prunes, the arms and the mode,
a weights file and what would retrain it): each raises a ValueError naming the field and how to fix it,
which pydantic reports with the spec's file before anything trains."""

from __future__ import annotations

import math

from rethink.arms import ARCH_ARMS
from rethink.data import DataError, is_folder
from rethink.imagefolder import FOLDER_UNSUPPORTED
from rethink.models import model_entry
from rethink.prune import METHODS, VARIANTS, variants_of
from rethink.splits import normalization

from .training_tables import BUILTIN_BASELINES, CapFraction


class CrossTableChecks:
    """Mixed into `Spec`: the checks that read more than one of its tables, run by its validator."""

    def _check_across_tables(self) -> None:
        """Every check that reads more than one table of the spec."""
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
