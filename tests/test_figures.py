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
CAPPED_KEYS = [f"{a}@E" for a in ARMS if a != "scratch-b"] + ["scratch-b@B", "scratch-b@P", "uniform@B", "newarm@E"]
PARETO_KEYS = ["finetune", "scratch", "lottery", "unpruned", "finetune-random", "guided", "transferred"]


def _study(key: str, k: int) -> optuna.Study:
    study = optuna.create_study(study_name=key, direction="maximize")
    for i in range(3):
        lr = 10 ** (-3 + i + 0.1 * k)
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
