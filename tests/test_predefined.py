"""Issue 38's predefined rows: the official code's released architectures of methods the project does not
implement (ThiNet's VGG-GAP / -Tiny, the regression-based VGG-16-5x) as `prune.method = "predefined"`, refused
with an arm that would inherit weights, and their scratch arms set against the published fine-tuned model
(one-sample, external: outside the Holm family), in the verdicts and the paper-shaped table."""

import math
from dataclasses import replace

import pytest
import torch
from scipy import stats

from conftest import TINY
from rethink.flops import forward_flops
from rethink.models import build_model, default_spec
from rethink.prune import VARIANTS, PruneConfig, PruneError, prune, variants_of
from study.final.evaluation import FinalResult
from study.plan.load import load_spec
from study.plan.paper import Published
from study.plan.spec import SpecError
from study.verdict.claims import Analysis, claims
from study.verdict.external import external_claims
from study.verdict.paper_table import paper_shaped
from study.verdict.stats import against_published

# The official definitions (github Eric-mingjie/rethinking-network-pruning@2ac473d70a09): thinetvgg.py's `gap`
# and `tiny`, vgg_5x.py's cfg; the weights (no biases) and FLOPs (2 per multiply-add) their authors state:
# github Roll920/ThiNet README.md (GAP 8.32 M, 9.34 B; Tiny 1.32 M, 2.01 B).
OFFICIAL = {
    "vgg-gap": ("gap", (32, 32, 64, 64, 128, 128, 128, 256, 256, 256, 512, 512, 512), (8.32, 9.34)),
    "vgg-tiny": ("gap", (16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 256), (1.32, 2.01)),
    "vgg16-5x": ("default", (24, 22, 41, 51, 108, 89, 111, 184, 276, 228, 512, 512, 512), None),
}


def test_every_predefined_variant_is_checked_here():
    assert variants_of("predefined") == sorted([*OFFICIAL, "resnet50-2x", *SSS_SCRATCH_B])


# imagenet/sparse-structure-selection/README.md's Scratch-B epochs, 100 epochs x the FLOPs ratio to the unpruned
# ResNet-50 (rounded down), and the sizes of its released MXNet models of Scratch-E (float32 parameters and BN
# statistics; "57 MB", "55 MB" as MiB). ResNet-41's link (130 MB, the same file for E and B) does not fit a
# float32 model of any layout, so it is not checked here.
SSS_SCRATCH_B = {"sss-resnet41": (117, None), "sss-resnet32": (145, 55), "sss-resnet26": (179, 57)}


@pytest.mark.parametrize("variant", sorted(SSS_SCRATCH_B))
def test_sss_models_are_the_official_layouts(variant):
    """The README's `config.units` layouts: their FLOPs give its Scratch-B epochs and their sizes its files'."""
    epochs, mib = SSS_SCRATCH_B[variant]
    spec = default_spec("resnet50_preact", 3, 1000, 224)
    with torch.device("meta"):
        base = build_model(spec)
    pruned = prune(base, spec, PruneConfig("predefined", variant=variant, seed=0))
    assert pruned.spec.model == variant.replace("sss-", "") + "_sss" and pruned.keep == {}
    ratio = forward_flops(base, (3, 224, 224)) / forward_flops(pruned.model, (3, 224, 224))
    assert math.floor(100 * ratio) == epochs
    if mib is not None:
        stored = sum(t.numel() for k, t in pruned.model.state_dict().items() if not k.endswith("num_batches_tracked"))
        assert round(4 * stored / 2**20) == mib
    small = default_spec("resnet50_preact", 3, 10, 32, 0.25)  # a smoke run's width scale reaches the kept blocks
    quarter = prune(build_model(small), small, PruneConfig("predefined", variant=variant))
    assert quarter.spec.widths == tuple(max(1, round(w / 4)) for w in default_spec(quarter.spec.model).widths)
    assert quarter.model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_a_pruned_sss_block_is_its_projection_alone():
    """ResNet-26's first stage keeps no residual function: its block is BN-ReLU-conv1×1 (symbol/resnet.py's
    shortcut of act1), and the network's output follows from it alone."""
    from rethink.models.resnet_sss import PreActBottleneck

    torch.manual_seed(0)
    block = PreActBottleneck(64, None, 64, 1).eval()
    x = torch.randn(2, 64, 8, 8)
    expected = torch.nn.functional.conv2d(torch.relu(block.bn1(x)), block.downsample.weight)
    assert torch.allclose(block(x), expected) and not hasattr(block, "conv1")


def test_resnet50_2x_is_a_model_of_its_own_built_fresh_from_resnet50():
    """The regression-based ResNet-50-2x: the registry's resnet50_2x (its selections and widths: test_models.py),
    from a resnet50 base; at a width scale its inner widths follow, its channel selections do not change."""
    from rethink.models.resnet_2x import WIDTHS_2X

    spec = default_spec("resnet50", 3, 1000, 224)
    pruned = prune(build_model(spec), spec, PruneConfig("predefined", variant="resnet50-2x"))
    assert pruned.spec == replace(spec, model="resnet50_2x", widths=WIDTHS_2X) and pruned.keep == {}
    small = default_spec("resnet50", 3, 10, 32, 0.25)
    quarter = prune(build_model(small), small, PruneConfig("predefined", variant="resnet50-2x"))
    assert quarter.spec.widths == tuple(max(1, round(w / 4)) for w in WIDTHS_2X)
    assert quarter.model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.fixture(scope="module")
def imagenet_vgg16():
    spec = default_spec("vgg16_nobn", 3, 1000, 224)
    return spec, build_model(spec)


@pytest.mark.parametrize("variant", sorted(OFFICIAL))
def test_a_predefined_variant_is_the_official_architecture_at_a_fresh_init(variant, imagenet_vgg16):
    head, widths, stated = OFFICIAL[variant]
    spec, base = imagenet_vgg16
    pruned = prune(base, spec, PruneConfig("predefined", variant=variant, seed=3))
    assert pruned.spec.widths == widths and pruned.spec.classifier == head and pruned.keep == {}
    assert pruned.spec == replace(spec, widths=widths, classifier=head)  # nothing else of the base's spec changes
    last_conv = [m for m in pruned.model.features if isinstance(m, torch.nn.Conv2d)][-1]
    base_last = [m for m in base.features if isinstance(m, torch.nn.Conv2d)][-1]
    if last_conv.weight.shape == base_last.weight.shape:  # same shape (VGG-16-5x's conv5_3): still not inherited
        assert not torch.equal(last_conv.weight, base_last.weight)
    if stated is not None:
        weights = sum(p.numel() for p in pruned.model.parameters() if p.dim() > 1)
        assert weights / 1e6 == pytest.approx(stated[0], abs=0.01)
        assert 2 * forward_flops(pruned.model, (3, 224, 224)) / 1e9 == pytest.approx(stated[1], abs=0.01)


def test_the_seed_alone_decides_a_predefined_init(imagenet_vgg16):
    spec, base = imagenet_vgg16
    first, again, other = (prune(base, spec, PruneConfig("predefined", variant="vgg-tiny", seed=s)) for s in (3, 3, 4))
    for name, w in first.model.state_dict().items():
        assert torch.equal(w, again.model.state_dict()[name])
    assert not torch.equal(first.model.features[0].weight, other.model.features[0].weight)


@pytest.mark.parametrize(
    "config, match",
    [
        (PruneConfig("predefined"), "predefined needs a variant"),
        (
            PruneConfig("predefined", variant="vgg-conv"),
            "unknown predefined variant 'vgg-conv'; valid names: resnet50-2x, sss-resnet26, sss-resnet32, "
            "sss-resnet41, vgg-gap",
        ),
    ],
)
def test_a_predefined_request_without_its_own_variant_is_refused(config, match):
    spec = default_spec("vgg16_nobn", 3, 10, 32)
    with pytest.raises(PruneError, match=match):
        prune(build_model(spec), spec, config)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (['study.arms=["finetune", "scratch-e", "scratch-b"]'], "study.arms: 'finetune' starts from the pruned"),
        (['study.arms=["finetune-random", "scratch-e"]'], "'finetune-random' starts from the pruned model's"),
        (['study.arms=["lottery", "scratch-e"]'], "the lottery arm needs a method that keeps the base's init"),
        (["prune.variant='vgg16-a'"], "prune.variant 'vgg16-a' is a l1-norm layout and prune.method prunes with"),
        (["prune.method='random'", "prune.like='predefined'"], "prune.like 'predefined' keeps no channels"),
        (["model='vgg16'"], "prune.variant 'vgg-gap' is for vgg16_nobn"),
    ],
)
def test_a_predefined_spec_refuses_what_would_inherit_weights_naming_the_field(overrides, match):
    with pytest.raises(SpecError, match=match):
        load_spec("imagenet-thinet-vgg16-gap", overrides)


def test_a_predefined_method_without_a_variant_is_refused_on_load():
    with pytest.raises(SpecError, match="prune.method 'predefined' names its architecture in prune.variant; give one"):
        load_spec(TINY, ["prune.method='predefined'", 'study.arms=["scratch-e", "scratch-b"]'])


def test_against_published_is_a_one_sample_t_with_the_published_models_binomial_variance():
    a, ref, margin, n_test = [0.705, 0.712, 0.698, 0.709], 0.69, 0.005, 50_000
    test = against_published(a, ref, margin, 0.975, n_test)
    x = torch.tensor(a, dtype=torch.float64).numpy()
    floor = lambda p: ((p * n_test + 0.5) / (n_test + 1)) * (1 - (p * n_test + 0.5) / (n_test + 1)) / n_test  # noqa: E731
    se = math.sqrt(max(x.var(ddof=1), floor(x.mean())) / len(a) + floor(ref))
    t = stats.t.ppf(0.975, len(a) - 1)
    assert test["diff"] == pytest.approx(x.mean() - ref) and test["se"] == pytest.approx(se)
    assert (test["ci_low"], test["ci_high"]) == (
        pytest.approx(x.mean() - ref - t * se),
        pytest.approx(x.mean() - ref + t * se),
    )
    assert test["p_noninferiority"] == pytest.approx(stats.t.sf((x.mean() - ref + margin) / se, len(a) - 1))
    assert test["verdict"] == "supported"  # the lower bound clears -margin
    assert against_published([0.60, 0.61, 0.605], ref, margin, 0.975, n_test)["verdict"] == "contradicted"
    wide = against_published([0.60, 0.78], ref, margin, 0.975, n_test)["verdict"]
    assert wide == "inconclusive at this sample size (n=2 seeds against one published number)"
    assert against_published([0.70], ref, margin, 0.975, n_test)["verdict"].startswith("inconclusive (too few seeds")


def _results(cells: dict[tuple[str, str], list[float]]) -> list[FinalResult]:
    return [
        FinalResult(arm, choice, seed, acc, 1.0, 1.0, 1, {}, f"{arm}-{choice}-{seed}", n_test=50_000)
        for (arm, choice), accs in cells.items()
        for seed, acc in enumerate(accs)
    ]


PUBLISHED = Published(67.34, None, None, "top-1 of a released model", "github.com/x/y README.md line 20")
ANALYSIS = Analysis(0.005, 0.975, ("E", "B"))


def test_scratch_is_set_against_the_published_fine_tune_outside_the_family_only_without_a_fine_tune_arm():
    cells = {("scratch-e", "best@E"): [0.650, 0.652, 0.651], ("scratch-b", "best@B"): [0.684, 0.688, 0.686]}
    results = _results(cells)
    ext = external_claims(results, ANALYSIS, "capped", PUBLISHED)
    assert [e["comparison_id"] for e in ext] == ["ext@E", "ext@B"] and {e["role"] for e in ext} == {"external"}
    by = {e["budget"]: e for e in ext}
    for budget, arm in (("E", ("scratch-e", "best@E")), ("B", ("scratch-b", "best@B"))):
        expected = against_published(cells[arm], 0.6734, 0.005, 0.975, 50_000)
        assert by[budget]["diff"] == pytest.approx(expected["diff"]) and by[budget]["verdict"] == expected["verdict"]
        assert (
            "p_holm" not in by[budget]
            and "67.34" in by[budget]["claim"]
            and "external reference" in by[budget]["caveat"]
        )
    assert by["B"]["verdict"] == "supported" and by["E"]["verdict"] == "contradicted"
    assert all(c["comparison_id"] != "ext@E" for c in claims(results, ANALYSIS, "capped"))  # not in the family
    with_finetune = _results({**cells, ("finetune", "best@E"): [0.67, 0.671, 0.669]})
    assert external_claims(with_finetune, ANALYSIS, "capped", PUBLISHED) == []  # a real arm is compared instead
    assert external_claims(results, ANALYSIS, "capped", None) == []  # no source states a number: nothing


def test_the_paper_table_shows_a_published_arm_the_spec_does_not_train():
    verdict = {
        "header": {
            "paper_row": "imagenet/thinet/vgg16_nobn/vgg-gap",
            "params_reduction": "94%",
            "flops_reduction": "70%",
        },
        "table": [
            {
                "arm": "scratch-e",
                "choice": "paper",
                "test_acc_mean": 0.66,
                "test_acc_std": 0.01,
                "seeds": 3,
                "epochs": 90,
            },
        ],
    }
    numbers = {"imagenet/thinet/vgg16_nobn/vgg-gap": {"finetune": PUBLISHED}}
    table, notes = paper_shaped([("gap", verdict)], numbers)
    rows = table.to_dict(orient="records")
    assert [r["arm"] for r in rows] == ["fine-tuned", "Scratch-E"]
    assert rows[0]["row"] == "published model, not trained here" and rows[0]["published (%)"].startswith("67.34 [")
    assert rows[0]["test acc (%)"] == "—" and rows[0]["n"] == 0 and rows[1]["published (%)"] == "missing"
    assert any("github.com/x/y README.md line 20" in n for n in notes)


def _predefined_specs() -> list[str]:
    from study.commands.specs import shipped

    return [n for n in shipped() if load_spec(n).prune.method == "predefined"]


@pytest.mark.parametrize("name", _predefined_specs())
def test_each_predefined_spec_names_its_paper_row_and_a_sourced_fine_tuned_number(name):
    from study.plan.paper import published, row_key

    spec = load_spec(name)
    assert spec.prune.method == "predefined" and VARIANTS[spec.prune.variant].model == spec.model
    numbers = published()[row_key(spec)]
    assert {"finetune", "scratch-e", "scratch-b"} <= set(numbers) and "finetune" not in spec.study.arms
    assert numbers["finetune"].source.startswith("github.com/")


def test_a_predefined_architecture_follows_the_bases_width_scale():
    """Widths are relative to the model's defaults: a base at a quarter of its widths (a smoke run's) gets the
    architecture at a quarter too, so it stays the smaller of the two."""
    spec = default_spec("vgg16_nobn", 3, 10, 32, 0.25)
    pruned = prune(build_model(spec), spec, PruneConfig("predefined", variant="vgg16-5x"))
    assert pruned.spec.widths == tuple(max(1, round(w / 4)) for w in OFFICIAL["vgg16-5x"][1])
    assert forward_flops(pruned.model, (3, 32, 32)) < forward_flops(build_model(spec), (3, 32, 32))


def test_a_pruned_model_that_costs_more_than_the_base_is_refused_naming_scratch_b():
    from rethink.train import TrainConfig
    from study.plan.layout import budgets

    with pytest.raises(SpecError, match=r"Scratch-B would train 0 epochs: the pruned model's 300 MACs .* 3.00x"):
        budgets(TrainConfig(epochs=2), base_flops=100, pruned_flops=300, n_train=10)
    assert budgets(TrainConfig(epochs=2), base_flops=100, pruned_flops=150, n_train=10).epochs_b == 1


def test_only_a_search_that_inherits_or_ranks_weights_trains_a_base_and_the_cost_follows():
    """A predefined architecture with scratch arms reads nothing of the base: its search trains none (the smoke
    sweep checks the runs and files), and its cost has no search base; a method that ranks the trained weights
    (L1-norm) or an arm that inherits them still trains one."""
    from study.plan.arch import search_trains_base
    from study.plan.cost import spec_cost

    spec = load_spec("imagenet-sss-resnet32", smoke=True)
    assert not search_trains_base(spec)
    assert search_trains_base(load_spec("imagenet-l1-resnet34-a", smoke=True))
    assert search_trains_base(load_spec(TINY, ["study.arms=['scratch-e', 'scratch-b']"]))
    stages = {s.name: s for s in spec_cost(spec).stages}
    assert stages["base (search: none, no arm inherits from it)"].runs == 0 and "base (search split)" not in stages
    assert stages["final: bases (train+val)"].runs == spec.final.seeds  # the unpruned row's bases still train


def test_a_worker_joins_a_prepared_search_without_a_base_checkpoint_only_where_none_is_trained(tmp_path):
    """`--worker` checks what `--prepare-only` made: the studies, and the base checkpoint only where the search
    trains a base."""
    import optuna

    from study.search.runner import check_prepared

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    for name in ("imagenet-sss-resnet32", "imagenet-l1-resnet34-a"):
        optuna.create_study(study_name=f"{name}.scratch-e", storage=storage)
    names = {"scratch-e@E": "imagenet-sss-resnet32.scratch-e"}
    check_prepared(load_spec("imagenet-sss-resnet32", smoke=True), storage, names, tmp_path)  # no base: none needed
    names = {"scratch-e@E": "imagenet-l1-resnet34-a.scratch-e"}
    with pytest.raises(SpecError, match="the base checkpoint .*model.pt not found"):
        check_prepared(load_spec("imagenet-l1-resnet34-a", smoke=True), storage, names, tmp_path)
