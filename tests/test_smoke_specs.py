"""Every shipped spec runs: its whole pipeline in smoke mode (synthetic images of its shape and class count,
one base epoch, one searched trial and one baseline per study, confirmation, two final seeds, verdicts and
report). A smoke form whose searches cannot reach its budgets fails here too: the runner refuses it once the base
is pruned (study/search/runner.py, check_reach on the real pruned architecture). Its own CI step:
`pytest -q -m smoke`."""

import json

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from study.commands.cli import main
from study.commands.specs import shipped
from study.plan.arch import search_trains_base
from study.plan.load import load_spec

pytestmark = pytest.mark.smoke


@pytest.mark.parametrize("name", shipped())
def test_every_shipped_spec_runs_end_to_end_in_smoke_mode(name, tracking_uri, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    argv = ["study", name, "--smoke", "--storage", storage, "--workdir", str(tmp_path / "runs")]
    assert main([*argv, "--report-dir", str(tmp_path / "reports")]) == 0
    spec = load_spec(name, smoke=True)
    for level in spec.levels():
        verdict = json.loads((tmp_path / "reports" / level.name / "verdict.json").read_text())
        arms = {r["arm"] for r in verdict["table"]}
        assert set(spec.study.arms) - {"unpruned"} <= arms and "unpruned" in arms
        assert all(r["seeds"] == 2 for r in verdict["table"])
        assert verdict["claims"] and verdict["primary"]
        assert "smoke run of" in (tmp_path / "reports" / level.name / "report.md").read_text()
    for summary in optuna.get_all_study_summaries(storage):
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()
        assert trials and all(t.state == TrialState.COMPLETE for t in trials), summary.study_name
    client = mlflow.MlflowClient()
    for exp in client.search_experiments():
        assert not client.search_runs([exp.experiment_id], "attributes.status != 'FINISHED'")
    kinds = {
        r.data.tags.get("rethink.kind")
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id])
    }
    bases = list((tmp_path / "runs").glob("*/base-*/model.pt"))
    if search_trains_base(spec):
        assert "base" in kinds and bases
    else:  # no arm inherits: the search trains no base; the final seeds' bases give the unpruned row (above)
        assert "base" not in kinds and not bases
