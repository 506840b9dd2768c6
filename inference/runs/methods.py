"""The evaluations of a run, from its config: the entries of ``evaluation.methods`` with the
switches of old applied, built into objects, and sorted into those that run, those left out
where they do not apply, and those refused at start because the user asked for them and they
cannot run.

An entry is ``{_target_: CLASS, OPTION: VALUE, ..., splits: [...], when_applicable: bool}``;
``splits`` (default ``[test]``) and ``when_applicable`` (default false: the user asked for it)
are the suite's, the rest goes to the class. The shipped entries are conf/evaluation/methods/;
their options read the settings ``evaluation.*`` by their names of old (``points:
${evaluation.ais_points}``), and :data:`SWITCHES` turns their methods on and off.
"""

import functools
import logging
from dataclasses import dataclass

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf, open_dict

from ..data import Dataset
from ..evaluations import SUITE_KEYS, Programs
from ..hydra_app import config_group
from ..schema import EvaluationSchema

__all__ = ["Method", "SPLITS", "SWITCHES", "applicable", "default_entries", "methods_of", "shipped_entry"]

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
# evaluation.KEY → the method it switches: true adds it (asked for), false takes it out, null
# leaves evaluation.methods as it is
SWITCHES = {"gaps": "gaps", "ais": "ais", "intervene": "intervention", "denoise": "denoise"}
# the override that turns a method off, where it has a setting of old
OFF = {**{name: f"evaluation.{key}=false" for key, name in SWITCHES.items()}, "posterior": "evaluation.posterior_points=0", "forecast": "evaluation.forecast_horizon=0"}


@dataclass
class Method:
    name: str
    evaluation: object  #: what its entry's _target_ built
    splits: tuple[str, ...]
    asked: bool  #: the user (or a preset) asked for it: it runs or the run is refused
    keys: tuple[str, ...] | None = None  #: the keys it declares it writes in a split's entry; None: its dict goes under its name

    def placed(self, out: dict) -> dict:
        """What it returned, as it goes into the split's entry of metrics.json."""
        return out if self.keys else {self.name: out}

    def entry(self, split_results: dict) -> dict | None:
        """What it wrote in a split's entry: its one key's value, or all it wrote."""
        keys = self.keys or (self.name,)
        written = {key: split_results[key] for key in keys if key in split_results}
        return written.get(keys[0]) if len(keys) == 1 else written


@functools.cache
def _shipped_options(name: str) -> dict | None:
    """conf/evaluation/methods/NAME.yaml as written (its interpolations unresolved), read once."""
    file = config_group("evaluation/methods") / f"{name}.yaml"
    return OmegaConf.to_container(OmegaConf.create(file.read_text())) if file.is_file() else None


def shipped_entry(name: str, required: bool = False) -> DictConfig | None:
    """The shipped entry of ``name`` (conf/evaluation/methods/NAME.yaml), or None (``required``: an error naming those there are)."""
    folder = config_group("evaluation/methods")
    options = _shipped_options(name)
    if options is not None:
        return OmegaConf.create(options)
    if required:
        shipped = sorted(f.name.removesuffix(".yaml") for f in folder.iterdir() if f.name.endswith(".yaml"))
        raise ValueError(f"evaluation/methods={name}: no such shipped method; choose one of {', '.join(shipped)}")
    return None


def completed(methods: DictConfig) -> None:
    """Give the entries of a run written before a shipped method gained an option that option,
    as the shipped entry has it (``latent_draws: ${evaluation.smc_latent_draws}``), in place: a
    re-evaluation's ``evaluation.*`` override of it then takes effect instead of being ignored."""
    for name, entry in methods.items():
        shipped = _shipped_options(name)  # its ${evaluation.*} as interpolations
        if shipped is None or entry is None or entry.get("_target_") != shipped.get("_target_"):
            continue  # not a shipped method, or the user's own under a shipped name
        with open_dict(entry):
            for key in shipped.keys() - entry.keys():
                entry[key] = shipped[key]


def default_entries() -> dict:
    """The entries every run gets (conf/evaluation/default.yaml's defaults list): those of a run
    whose config predates ``evaluation.methods``."""
    defaults = OmegaConf.create((config_group("evaluation") / "default.yaml").read_text()).defaults
    names = [entry.split("/", 1)[1] for entry in defaults if isinstance(entry, str) and entry.startswith("methods/")]
    return {name: shipped_entry(name) for name in names}


def _switched(evaluation: DictConfig) -> dict:
    """``evaluation.methods`` with the switches applied: name → entry. The entries of the config
    stay its nodes (their interpolations resolve in the run's config); a method a switch adds
    is its shipped entry under what ``evaluation.methods.NAME.*`` gave, its ``${evaluation.*}``
    resolved in a copy of the run's settings."""
    methods = dict(evaluation.methods.items())
    on = {method: evaluation[key] for key, method in SWITCHES.items()}
    on["posterior"] = True if evaluation.posterior_points else None
    on["forecast"] = False if evaluation.forecast_horizon == 0 else None
    for name, setting in on.items():
        if setting is False:
            methods.pop(name, None)
        elif setting is True:
            entry = OmegaConf.merge(shipped_entry(name), methods.get(name) or {})
            entry.when_applicable = False  # asked for by its switch
            settings = {key: value for key, value in evaluation.items_ex(resolve=False) if key != "methods"}
            methods[name] = OmegaConf.create({"evaluation": {**settings, "methods": {name: entry}}}).evaluation.methods[name]
    return methods


def _check_aliases(name: str, entry: DictConfig, evaluation: DictConfig) -> None:
    """Refuse an option given both by its setting of old (``evaluation.ais_points=50``) and on
    the method (``evaluation.methods.ais.points=20``), differently."""
    shipped = _shipped_options(name)
    if shipped is None:
        return
    defaults = EvaluationSchema()
    raw = OmegaConf.to_container(entry, resolve=False)
    for option, value in shipped.items():
        if not (isinstance(value, str) and value.startswith("${evaluation.")) or raw.get(option, value) == value:
            continue
        setting = value[len("${evaluation.") : -1]
        given = evaluation[setting]
        if given != getattr(defaults, setting):
            raise ValueError(
                f"evaluation.{setting}={given} and evaluation.methods.{name}.{option}={raw[option]} set the same option differently; drop one"
            )


def methods_of(cfg: DictConfig) -> list[Method]:
    """The run's evaluations, built, in the order of ``evaluation.methods``."""
    methods, claimed = [], {}
    for name, entry in _switched(cfg.evaluation).items():
        if entry is None:  # evaluation.methods.NAME=null takes a method out
            continue
        if "_target_" not in entry:
            raise ValueError(
                f"evaluation.methods.{name} has no _target_: name the class, +evaluation.methods.{name}._target_=PKG.MODULE.CLASS"
            )
        _check_aliases(name, entry, cfg.evaluation)
        options = OmegaConf.to_container(entry, resolve=True)
        splits = tuple(options.pop("splits", None) or ("test",))
        asked = not options.pop("when_applicable", False)
        if any(split not in SPLITS for split in splits):
            raise ValueError(f"evaluation.methods.{name}.splits={list(splits)} is invalid: expected a list of {', '.join(SPLITS)}")
        target = options.pop("_target_")
        try:
            kind = get_object(target)
        except Exception as e:  # a module that does not import, a name it lacks
            raise ValueError(
                f"evaluation.methods.{name}: {target} could not be built ({' '.join(line.strip() for line in str(e).splitlines() if line.strip())}); put its module on the "
                f"path (PYTHONPATH), fix its name, or take the method out with evaluation.methods.{name}=null"
            ) from None
        try:
            evaluation = kind(**options)  # the options as they are: an evaluation is built from plain values
        except (ValueError, TypeError) as e:
            raise ValueError(f"evaluation.methods.{name}: {e}") from None
        if not callable(evaluation):
            raise TypeError(f"evaluation.methods.{name}: {target} built a {type(evaluation).__name__}, which cannot be called with a context")
        keys = getattr(evaluation, "keys", None)
        for key in keys or (name,):
            if keys is None and key in SUITE_KEYS:
                raise ValueError(f"evaluation.methods.{name}: {name} is a key the suite writes in metrics.json; give the method another name")
            if key in claimed:
                raise ValueError(f"evaluation.methods.{name} and evaluation.methods.{claimed[key]} both write {key!r} in metrics.json; keep one")
            claimed[key] = name
        methods.append(Method(name, evaluation, splits, asked, keys))
    return methods


def applicable(methods: list[Method], programs: Programs, data: Dataset) -> list[Method]:
    """The methods that can take the programs and data; one asked for that cannot is refused
    (before any training), one on by default that cannot is left out with the reason."""
    kept, left_out = [], []
    for method in methods:
        unsupported = getattr(method.evaluation, "unsupported", None)
        reason = unsupported(programs, data) if unsupported else None
        if reason is None:
            kept.append(method)
        elif method.asked:
            switch = OFF.get(method.name, f"evaluation.methods.{method.name}=null")
            raise ValueError(f"evaluation.methods.{method.name} cannot run here: {reason}; turn it off with {switch}")
        else:
            left_out.append(f"{method.name} ({reason})")
    if left_out:
        log.info(f"evaluations left out where they do not apply: {'; '.join(left_out)}")
    return kept
