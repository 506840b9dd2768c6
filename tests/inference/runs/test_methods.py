"""The evaluations of a run from its config: evaluation.methods, the switches of old, a user's
own method, and the refusals, all before any training."""

import pytest

from conftest import TINY, compose_config
from inference.evaluations import Annealed, Gaps
from inference.runs.methods import methods_of

USER = "user_evaluations.ReconstructionError"


def names(*overrides: str) -> list[str]:
    return [method.name for method in methods_of(compose_config(*TINY, *overrides))]


def test_the_switches_of_old_turn_the_shipped_methods_on_and_off():
    assert names() == ["log_px", "log_px_smc", "bits_per_dim", "accuracy", "probe", "denoise", "forecast", "physics"]
    assert names("evaluation.gaps=true", "evaluation.ais=true", "evaluation.posterior_points=2", "evaluation.intervene=true")[-4:] == [
        "gaps", "ais", "intervention", "posterior"
    ]
    assert "denoise" not in names("evaluation.denoise=false") and "forecast" not in names("evaluation.forecast_horizon=0")
    assert "intervention" not in names("experiment=pendulum_hypotheses")  # its preset adds it, evaluation.intervene=false takes it out
    # the options of a switched method read the settings of old
    ais = {m.name: m for m in methods_of(compose_config(*TINY, "evaluation.ais=true", "evaluation.ais_points=7", "evaluation.ais_start=guide"))}["ais"]
    assert isinstance(ais.evaluation, Annealed) and ais.evaluation.points == 7 and ais.evaluation.start == "guide" and ais.asked
    assert ais.splits == ("test",)


def test_a_method_added_by_its_config_entry_or_its_shipped_file():
    methods = {m.name: m for m in methods_of(compose_config(*TINY, "+evaluation/methods=gaps", "evaluation.gap_points=3"))}
    assert isinstance(methods["gaps"].evaluation, Gaps) and methods["gaps"].evaluation.points == 3 and methods["gaps"].asked
    mine = {m.name: m for m in methods_of(compose_config(*TINY, f"+evaluation.methods.recon._target_={USER}", "+evaluation.methods.recon.draws=2",
                                                          "+evaluation.methods.recon.splits=[valid,test]"))}["recon"]
    assert mine.evaluation.draws == 2 and mine.splits == ("valid", "test") and mine.asked


@pytest.mark.parametrize(
    "overrides, message",
    [
        ([f"+evaluation.methods.elbo._target_={USER}"], "evaluation.methods.elbo: elbo is a key the suite writes in metrics.json; give the method another name"),
        (["+evaluation.methods.recon.draws=2"], r"evaluation.methods.recon has no _target_: name the class, \+evaluation.methods.recon._target_=PKG.MODULE.CLASS"),
        ([f"+evaluation.methods.recon._target_={USER}", "+evaluation.methods.recon.splits=[test,holdout]"], r"evaluation.methods.recon.splits=\['test', 'holdout'\] is invalid"),
        (["evaluation.ais=true", "evaluation.ais_points=50", "+evaluation.methods.ais.points=20"],
         "evaluation.ais_points=50 and evaluation.methods.ais.points=20 set the same option differently; drop one"),
        (["+evaluation/methods=ais", "evaluation.methods.ais.start=middle"], "evaluation.methods.ais: start='middle': expected prior or guide"),
        (["+evaluation.methods.recon._target_=no_such_module.Numbers"],
         r"evaluation.methods.recon: no_such_module.Numbers could not be built \(.*No module named 'no_such_module'.*\); put its module on the path"),
        ([f"+evaluation.methods.recon._target_={USER}", "+evaluation.methods.recon.draws=2", "+evaluation.methods.other._target_=inference.evaluations.LogPx"],
         "evaluation.methods.other and evaluation.methods.log_px both write 'elbo' in metrics.json; keep one"),
        (["evaluation.smc_latent_draws=7"], "evaluation.smc_latent_draws=7 does not divide evaluation.smc_particles=100: each draw gets as many particles"),
        (["evaluation.smc_proposal=bootstrap"], "evaluation.smc_proposal must be one of guide, transition, defensive, got 'bootstrap'"),
    ],
)
def test_a_bad_method_entry_is_refused_naming_it(overrides, message):
    with pytest.raises(Exception, match=message):
        methods_of(compose_config(*TINY, *overrides))


def test_a_run_from_before_a_methods_option_gets_it_wired_to_its_key():
    """A re-evaluation of a run whose log_px_smc entry predates ``latent_draws``: the override
    ``evaluation.smc_latent_draws=20`` reaches the method instead of being ignored, and a user's
    own method under its own name is left as it is."""
    from omegaconf import open_dict

    from inference.runs.methods import completed

    cfg = compose_config(*TINY, f"+evaluation.methods.recon._target_={USER}")
    with open_dict(cfg.evaluation.methods.log_px_smc):
        del cfg.evaluation.methods.log_px_smc["latent_draws"]  # as written before the option
    cfg.evaluation.smc_latent_draws = 20
    completed(cfg.evaluation.methods)
    smc = {m.name: m for m in methods_of(cfg)}["log_px_smc"]
    assert smc.evaluation.latent_draws == 20 and set(cfg.evaluation.methods.recon) == {"_target_"}
