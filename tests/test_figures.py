"""Every figure draws each arm in its own colour (never the grey of 'no arm'), one marker per budget, in
every mode: checked from the figures' own artists, over the registry of arms and one arm it does not list."""

import matplotlib.colors as mcolors
import optuna
import pytest
from optuna.distributions import FloatDistribution

from rethink.arms import ARMS
from study.verdict import figures
from study.verdict.styles import ARM_COLOURS, FALLBACK, MARKERS, arm_colour, split_key

# every arm of the registry, the Section 5 arms, and one arm no table lists
CAPPED_KEYS = list(
    dict.fromkeys(
        [f"{a}@E" for a in ARMS if a != "scratch-b"] + ["scratch-b@B", "scratch-b@P", "uniform@B", "newarm@E"]
    )
)
PARETO_KEYS = ["finetune", "scratch", "lottery", "unpruned", "finetune-random", "guided", "transferred"]


def _study(key: str, k: int) -> optuna.Study:
    study = optuna.create_study(study_name=key, direction="maximize")
    for i in range(3):
        lr = 10 ** (-3 + i + 0.05 * k)  # inside the distribution for every key (k < 20)
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": lr},
                distributions={"lr": FloatDistribution(1e-4, 1.0, log=True)},
                value=0.9 + 0.01 * i + 0.001 * k,
                user_attrs={"train_flops": 1e9 * (i + 1 + k), "pipeline_flops": 3e9 * (i + 1 + k)},
            )
        )
    return study


def _arm_colours(fig) -> dict[str, set[str]]:
    """arm -> the colours its labelled artists are drawn in (faces, edges, lines), read from the figure."""
    out: dict[str, set[str]] = {}
    for ax in fig.axes:
        for artist in [*ax.collections, *ax.lines, *ax.containers]:
            label = artist.get_label()
            if not label or label.startswith("_"):
                continue
            arm = label.split()[0].rstrip(",")
            parts = [artist] if not hasattr(artist, "lines") else [a for a in artist.lines if a is not None]
            for part in parts:
                for getter in ("get_color", "get_facecolor", "get_edgecolor"):
                    colours = getattr(part, getter, lambda: [])()
                    colours = (
                        [colours] if isinstance(colours, str) or len(getattr(colours, "shape", ())) == 1 else colours
                    )
                    for c in colours:
                        rgba = mcolors.to_rgba(c)
                        if rgba[3] > 0:  # hollow markers have no face
                            out.setdefault(arm, set()).add(mcolors.to_hex(rgba))
    return out


def _check(fig, arms: set[str]) -> None:
    colours = _arm_colours(fig)
    assert set(colours) == arms, colours
    grey = mcolors.to_hex(FALLBACK)
    for arm, cs in colours.items():
        assert cs == {mcolors.to_hex(arm_colour(arm))}, (arm, cs)  # one colour per arm, in every artist
        assert grey not in cs
    hexes = [next(iter(cs)) for cs in colours.values()]
    assert len(set(hexes)) == len(hexes)  # two different arms never share a colour


@pytest.mark.parametrize("keys", [CAPPED_KEYS, PARETO_KEYS], ids=["capped", "pareto"])
@pytest.mark.parametrize("plot", ["pareto", "best_so_far", "lr_sensitivity", "curves"])
def test_every_figure_draws_each_arm_in_its_own_colour(keys, plot):
    studies = {k: _study(k, i) for i, k in enumerate(keys)}
    arms = {split_key(k)[0] for k in keys}
    if plot == "pareto":
        fig = figures.pareto_plot(studies, {"E": 2e9, "B": 4e9})
    elif plot == "best_so_far":
        fig = figures.best_so_far_plot(studies)
    elif plot == "lr_sensitivity":
        points = {k: [(t.params["lr"], t.values[0]) for t in s.trials] for k, s in studies.items()}
        fig = figures.lr_sensitivity_plot(points)
    else:
        curves = {f"{split_key(k)[0]}:best@{split_key(k)[1] or 'E'}": {"val_acc": [0.5, 0.7, 0.8]} for k in keys}
        curves |= {f"{split_key(k)[0]}:paper": {"val_acc": [0.4, 0.6, 0.7]} for k in keys}
        fig = figures.curves_plot(curves)
    _check(fig, arms)
    if plot in ("pareto", "lr_sensitivity") and "scratch-b@B" in keys:  # budgets told apart by marker
        marks = {c.get_label(): c.get_paths()[0].vertices.shape for c in fig.axes[0].collections}
        b = next(v for k, v in marks.items() if k.startswith("scratch-b (budget B)"))
        p = next(v for k, v in marks.items() if k.startswith("scratch-b (budget P)"))
        assert b != p and MARKERS["B"] != MARKERS["P"]


def test_an_arm_the_table_does_not_list_gets_a_spare_colour_of_its_own_everywhere():
    assert arm_colour("newarm@B") == arm_colour("newarm:best@B") == arm_colour("newarm")
    assert arm_colour("newarm") not in (FALLBACK, *ARM_COLOURS.values())
    assert split_key("scratch-b@P") == ("scratch-b", "P") and split_key("finetune:rewind") == ("finetune", None)


def _row(arm: str, pick: str, accs: list[float], runs: str = "") -> list[str]:
    """Rows of a per-seed table; cells given the same `runs` name share their runs."""
    return [f"{arm},{pick},{seed},{acc},{runs or arm + pick}-{seed}" for seed, acc in enumerate(accs)]


def test_the_verdict_figure_puts_the_primary_first_and_tells_the_verdicts_apart(tmp_path, capsys):
    """From a per-seed table whose comparisons are supported (B), contradicted (E) and missing (P, the same
    runs as B): `rethink verdict --figure` writes the figure; its rows, words and colours say which is which."""
    from study.commands.cli import main
    from study.verdict.claims import claims
    from study.verdict.runs_table import read_runs
    from study.verdict.settings import Analysis
    from study.verdict.verdict_figure import STYLES, verdict_plot

    lines = ["arm,pick,seed,test_acc,run_id"]
    lines += _row("finetune", "best@E", [0.950, 0.951, 0.952, 0.950])
    lines += _row("scratch-b", "best@B", [0.960, 0.961, 0.962, 0.961], "sb")
    lines += _row("scratch-b", "best@P", [0.960, 0.961, 0.962, 0.961], "sb")
    lines += _row("scratch-e", "best@E", [0.900, 0.902, 0.901, 0.900])
    table = tmp_path / "runs.csv"
    table.write_text("\n".join(lines) + "\n")
    png = tmp_path / "fig" / "verdicts.png"
    assert main(["verdict", str(table), "--figure", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"figure: {png}" in capsys.readouterr().out

    results = [r for rs in read_runs(table).results.values() for r in rs]
    analysis = Analysis(0.005, 0.975, ("E", "B", "P"))
    fig = verdict_plot(claims(results, analysis, "capped"), analysis)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0].startswith("PRIMARY  claim 1 at B") and not any(lb.startswith("PRIMARY") for lb in labels[1:])
    words = [t.get_text() for t in ax.texts]
    assert words[0] == "supported" and words[1].startswith("contradicted, Holm p") and words[2] == "same runs as B"
    colours = {t.get_text().split(",")[0]: mcolors.to_hex(t.get_color()) for t in ax.texts}
    assert colours["supported"] == mcolors.to_hex(STYLES["supported"][0])
    assert colours["contradicted"] == mcolors.to_hex(STYLES["contradicted"][0])
    assert colours["same runs as B"] == colours["missing"]  # claim 3 lacks its cells here: no test either way
    assert len({colours["supported"], colours["contradicted"], colours["missing"]}) == 3  # each word its colour
    margin_lines = [ln for ln in ax.lines if ln.get_label().startswith("−margin")]
    assert margin_lines and margin_lines[0].get_xdata()[0] == pytest.approx(-0.5)


def test_a_verdict_figure_path_that_is_not_a_png_is_one_line(tmp_path, capsys):
    from study.commands.cli import main

    rows = ["arm,pick,seed,test_acc,run_id", *_row("finetune", "best@E", [0.9, 0.91])]
    rows += _row("scratch-b", "best@B", [0.92, 0.93])
    table = tmp_path / "runs.csv"
    table.write_text("\n".join(rows) + "\n")
    assert main(["verdict", str(table), "--figure", str(tmp_path / "v.pdf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--figure" in err[0] and ".png" in err[0]
