"""The paper-shaped results table and the published numbers beside it: every number from a line of
study/specs/paper_numbers.csv that names its source, a missing one shown as missing, never guessed."""

import pytest

from study.plan.load import load_spec
from study.plan.paper import ARMS, PAPER_NUMBERS, Published, published, row_key
from study.plan.spec import SpecError
from study.verdict.paper_table import MISSING, paper_section, paper_shaped

HEADER = "row,arm,mean,std,seeds,what,source\n"


def _record(arm, choice, mean, std, seeds=3, epochs=10, flops=1.5e12):
    return {
        "arm": arm,
        "choice": choice,
        "test_acc_mean": mean,
        "test_acc_std": std,
        "seeds": seeds,
        "epochs": epochs,
        "final_train_flops": flops,
    }


def _verdict(row="cifar10/l1-norm/resnet56/resnet56-a"):
    return {
        "header": {"paper_row": row, "flops_reduction": "27.6%", "params_reduction": "13.7%"},
        "table": [
            _record("scratch-b", "best@B", 0.9312, 0.0011, epochs=20),
            _record("unpruned", "paper", 0.9350, 0.0020),
            _record("finetune", "rewind", 0.9290, 0.0015),
            _record("finetune", "paper", 0.9270, 0.0010, epochs=4),
            _record("finetune", "best@E", 0.9301, float("nan"), seeds=1),
            _record("scratch-e", "paper", 0.9280, 0.0021),
        ],
    }


def test_the_shipped_numbers_each_name_their_source():
    numbers = published()
    assert numbers, "the shipped file holds published numbers"
    for row, arms in numbers.items():
        assert row.count("/") == 3, row  # DATASET/METHOD/MODEL/SETTING
        for arm, p in arms.items():
            assert arm in ARMS and 0 < p.mean < 100
            assert "github.com/" in p.source, p.source
            read_off_a_figure = p.source.endswith(".png") and "read at the marker's pixel position" in p.what
            assert "README.md line" in p.source or read_off_a_figure, p.source


@pytest.mark.parametrize(
    "line, says",
    [
        ("a/b/c/d,finetune,93.1,,,top-1,\n", "no source"),
        ("a/b/c/d,finetune,ninety,,,top-1,src\n", "mean 'ninety' is not a number"),
        ("a/b/c/d,finetune,193.1,,,top-1,src\n", r"outside \[0, 100\]"),
        ("a/b/c/d,finetuned,93.1,,,top-1,src\n", "arm 'finetuned' is not one of"),
        ("a/b/c/d,finetune,,,,top-1,src\n", "no mean"),
        ("a/b/c/d,finetune,93.1,,,top-1\n", "6 fields, expected 7"),
        ("a/b/c/d,finetune,93.1,,,top-1,src\na/b/c/d,finetune,93.2,,,top-1,src\n", "given twice"),
    ],
)
def test_a_bad_line_is_one_error_naming_file_and_line(tmp_path, line, says):
    path = tmp_path / "numbers.csv"
    path.write_text("# a comment line\n" + HEADER + line)
    with pytest.raises(SpecError, match=says) as e:
        published(path)
    assert f"{path}:3" in str(e.value) or f"{path}:4" in str(e.value)
    assert "\n" not in str(e.value)


def test_a_wrong_header_is_refused(tmp_path):
    path = tmp_path / "numbers.csv"
    path.write_text("row,arm,top1,source\n")
    with pytest.raises(SpecError, match="the header must be row,arm,mean,std,seeds,what,source"):
        published(path)


def test_row_keys_follow_variant_ratio_or_the_spec_override():
    assert row_key(load_spec("cifar10-l1-resnet56-a")) == "cifar10/l1-norm/resnet56/resnet56-a"
    assert row_key(load_spec("cifar10-magnitude-vgg19-60")) == "cifar10/magnitude/vgg19/60%"
    spec = load_spec("quick")
    named = spec.model_copy(update={"paper_row": "imagenet/magnitude/resnet50/60%"})
    assert row_key(named) == "imagenet/magnitude/resnet50/60%"
    assert named.digest() == spec.digest() and named.study_fields() == spec.study_fields()  # metadata only


def test_the_published_number_stands_beside_the_paper_recipe_with_its_source():
    numbers = {
        "cifar10/l1-norm/resnet56/resnet56-a": {
            "finetune": Published(92.97, 0.17, 5, "Table 1", "a source, page 4"),
            "scratch-b": Published(93.05, None, None, "released model", "another source, line 9"),
        }
    }
    table, notes = paper_shaped([("s", _verdict())], numbers)
    rows = {(r["arm"], r["row"]): r for r in table.to_dict(orient="records")}
    # arms in the paper's order, each arm's rows together
    assert list(dict.fromkeys(table.arm)) == ["unpruned", "fine-tuned", "Scratch-E", "Scratch-B"]
    assert rows[("fine-tuned", "paper recipe")]["published (%)"] == "92.97 ± 0.17 [1], 5 seeds"
    assert rows[("fine-tuned", "tuned (best at E)")]["published (%)"] == ""
    assert rows[("Scratch-B", "tuned (best at B)")]["published (%)"] == "93.05 [2]"  # no paper row: its first
    assert rows[("unpruned", "paper recipe")]["published (%)"] == MISSING  # no line states it
    assert rows[("Scratch-E", "paper recipe")]["published (%)"] == MISSING
    assert "[1] Table 1: a source, page 4" in notes and "[2] released model: another source, line 9" in notes
    assert any(n.startswith("missing: no source") for n in notes)
    # our numbers: percent with two decimals, a single seed said so, counts as integers, reductions per row
    assert rows[("fine-tuned", "paper recipe")]["test acc (%)"] == "92.70 ± 0.10"
    assert rows[("fine-tuned", "tuned (best at E)")]["test acc (%)"] == "93.01 (one seed)"
    assert rows[("Scratch-B", "tuned (best at B)")]["epochs"] == 20 and rows[("unpruned", "paper recipe")]["n"] == 3
    assert rows[("unpruned", "paper recipe")]["params −"] == "0%"
    assert rows[("Scratch-E", "paper recipe")]["params −"] == "13.7%"
    assert rows[("Scratch-E", "paper recipe")]["FLOPs −"] == "27.6%"
    assert rows[("Scratch-E", "paper recipe")]["training MACs"] == "1.5e+12"
    text = "\n".join(paper_section([("s", _verdict())], numbers))
    assert "nan" not in text.lower() and "{" not in text


def test_a_report_without_a_published_row_shows_every_arm_missing():
    table, notes = paper_shaped([("quick", _verdict("digits/l1-norm/vgg11/50%"))], published(PAPER_NUMBERS))
    firsts = table.groupby("arm", sort=False)["published (%)"].apply(lambda s: sorted(set(s)))
    assert all(v == ["", MISSING] or v == [MISSING] for v in firsts)
    assert "quick: published row `digits/l1-norm/vgg11/50%`" in notes
