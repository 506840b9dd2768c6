"""The documentation cannot rot: the site builds strictly, every command it shows is run or
composed, and every Python block runs.

Each fenced block that holds a command (a line starting with ``python -m inference.``, ``vae-``,
``torchrun`` or ``make``) is marked, on the line before it, with its class:

- ``<!-- commands: run -->``: each command runs through its entry point, in this process, in a
  working folder of the page's own, with small fixed overrides appended (one epoch, few particles and points);
  ``DATE/TIME`` in a path stands for the run directory the commands before it made;
- ``<!-- commands: composed -->``: each command's config is composed (Hydra's compose, as
  ``--cfg job`` does; every job of a ``--multirun`` sweep), ``compare``'s arguments parsed, a
  ``make`` command dry-run (``make -n``);
- ``<!-- commands: excluded: REASON -->``: not run, for the written reason.

A command in running text (an inline code span with arguments) is composed. A Python block marked
``<!-- file: NAME.py -->`` is written into the page's working folder under that name, where the
page's commands import it; every Python block is executed.
"""

import itertools
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *ROOT.joinpath("docs").glob("**/*.md")])
COMMAND = re.compile(r"^(python -m inference\.|vae-|torchrun|make )")
MARK = re.compile(r"^<!-- (commands|file|python): ?(.*?) -->$")
PROGRAMS = {"vae-train": "inference.train", "vae-evaluate": "inference.evaluate", "vae-compare": "inference.compare"}
# appended to each command a test runs: what a run is, in a few seconds
FAST = {
    "inference.train": ["train.epochs=1", "train.progress=false", "train.threads=1", "evaluation.num_particles=10", "evaluation.max_points=20", "evaluation.figures=false"],
    "inference.evaluate": ["train.progress=false", "evaluation.num_particles=10", "evaluation.max_points=20", "evaluation.figures=false"],
}
PLACEHOLDERS = ("OVERRIDES", "...")  # words of a command that stand for the reader's own overrides


@dataclass
class Block:
    page: Path
    line: int
    language: str
    text: str
    mark: tuple[str, str] | None = None

    @property
    def commands(self) -> list[str]:
        joined = re.sub(r"\\\n\s*", " ", self.text)  # continuation lines
        lines = [re.split(r"\s+#\s", line, maxsplit=1)[0].strip() for line in joined.splitlines()]
        return [line for line in lines if COMMAND.match(line)]

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


@dataclass
class Page:
    path: Path
    blocks: list[Block] = field(default_factory=list)
    inline: list[str] = field(default_factory=list)


def read(path: Path) -> Page:
    """The page's fenced blocks, each with the mark on the line before it, and its inline commands."""
    page, lines = Page(path), path.read_text().splitlines()
    i, mark = 0, None
    while i < len(lines):
        line = lines[i]
        if match := MARK.match(line.strip()):
            mark = (match.group(1), match.group(2))
        elif line.lstrip().startswith("```"):
            indent, language = line.index("`"), line.strip().strip("`").strip()
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            text = "\n".join(body[indent:] for body in lines[i + 1:end])
            page.blocks.append(Block(path, i + 1, language, text, mark))
            i, mark = end, None
        else:
            if line.strip():
                mark = None
            page.inline += [span for span in re.findall(r"`([^`]+)`", line) if COMMAND.match(span) and len(shlex.split(span)) > (1 if span.startswith(("vae-", "make ")) else 3)]
        i += 1
    return page


ALL = [read(path) for path in PAGES]


def page_id(page: Page) -> str:
    return str(page.path.relative_to(ROOT))


def test_every_block_of_commands_is_marked_run_composed_or_excluded_with_a_reason():
    unmarked = [str(block) for page in ALL for block in page.blocks if block.commands and (block.mark is None or block.mark[0] != "commands")]
    assert not unmarked, f"mark these blocks <!-- commands: run | composed | excluded: REASON --> on the line before: {unmarked}"
    excluded = [block for page in ALL for block in page.blocks if block.mark and block.mark[0] == "commands" and block.mark[1].startswith("excluded")]
    reasonless = [str(block) for block in excluded if len(block.mark[1].removeprefix("excluded:").strip()) < 10]
    assert not reasonless, f"an excluded block says why: {reasonless}"


# ---------------------------------------------------------------------------------------------
# composed


def words(command: str) -> tuple[str, list[str]]:
    """The entry point's module and its arguments, placeholders left out."""
    argv = shlex.split(command.replace("$VAE_DATA", "/nonexistent/vae_data"))
    if argv[0] in PROGRAMS:
        module, rest = PROGRAMS[argv[0]], argv[1:]
    elif argv[:2] == ["python", "-m"]:
        module, rest = argv[2], argv[3:]
    else:
        module, rest = argv[0], argv[1:]
    return module, [word for word in rest if word not in PLACEHOLDERS]


def jobs(arguments: list[str]) -> list[list[str]]:
    """Each job's overrides: a --multirun sweep's every combination (a sweeper's own search, such
    as Optuna's, is the sweeper's: its first values stand for it)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    flags = {"--multirun", "-m", "--cfg", "job", "all", "hydra"}
    overrides = [word for word in arguments if word not in flags]
    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = [list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.input_line] for o in parsed]
    choices = [[f"{o.get_key_element()}={value}" if o.is_sweep_override() else value for value in values] for o, values in zip(parsed, choices)]
    return [list(combination) for combination in itertools.product(*choices)]


def composed_commands() -> list[tuple[str, str]]:
    """(where, command) of every command the pages compose: inline ones and composed blocks'."""
    found = []
    for page in ALL:
        found += [(page_id(page), command) for command in page.inline]
        found += [(str(block), command) for block in page.blocks if block.mark == ("commands", "composed") for command in block.commands]
    return found


def configs_to_compose() -> dict[tuple[str, tuple[str, ...]], str]:
    """Each distinct (entry config, job overrides) of the composed commands, with the first place
    that shows it: a config composes in a fifth of a second, and many commands share one."""
    configs = {}
    for where, command in composed_commands():
        if command.startswith("make "):
            argv = shlex.split(command.replace("$VAE_DATA", "/nonexistent/vae_data"))
            if argv[1] != "run" or not (make_args := [a.split("=", 1)[1] for a in argv if a.startswith("ARGS=")]):
                continue
            command = "python -m inference.train " + make_args[0]  # what make run runs
        module, arguments = words(command)
        if module in FAST:
            for overrides in jobs(arguments):
                configs.setdefault(("train" if module == "inference.train" else "evaluate", tuple(overrides)), f"{where}: `{command}`")
    return configs


CONFIGS = sorted(configs_to_compose().items())
SHARDS = 4  # spread over the test workers


@pytest.mark.parametrize("shard", range(SHARDS))
def test_the_commands_configs_compose(shard):
    from hydra import compose, initialize_config_dir

    import inference  # noqa: F401  (the schemas)
    import inference.evaluate  # noqa: F401  (the resolvers the entry configs name)
    import inference.train  # noqa: F401

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for (config, overrides), where in CONFIGS[shard::SHARDS]:
            try:
                compose(config, overrides=list(overrides), return_hydra_config=True)
            except Exception as error:  # noqa: BLE001 - the command is what the failure names
                raise AssertionError(f"{where} does not compose: {error}") from error


def test_the_make_and_compare_commands_parse():
    """A make command dry-runs (``make -n``: its target and variables exist), compare's arguments parse."""
    from inference.compare import arguments

    for where, command in composed_commands():
        if command.startswith("make "):
            done = subprocess.run(["make", "-n", *shlex.split(command)[1:]], cwd=ROOT, capture_output=True, text=True)
            assert done.returncode == 0, f"{where}: `{command}`: {done.stderr}"
        elif words(command)[0] == "inference.compare":
            arguments().parse_args(words(command)[1])


# ---------------------------------------------------------------------------------------------
# run


def newest_run(folder: Path) -> Path | None:
    runs = sorted(folder.glob("runs/*/*"), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def run(command: str, folder: Path) -> tuple[int, str]:
    """The command's entry point run in this process, as its console script runs it (conftest's
    ``run_command``: an interpreter of its own would add seconds of imports to each command)."""
    import importlib

    from conftest import run_command

    module, arguments = words(command)
    if (done := newest_run(folder)) is not None:
        arguments = [re.sub(r"\b(runs|outputs)/DATE/TIME\b", str(done), a) for a in arguments]
    return run_command(importlib.import_module(module).main, *arguments, *FAST.get(module, []))


RUN = [(page, block) for page in ALL for block in page.blocks if block.mark == ("commands", "run")]


def with_page_files(page: Page, folder: Path, monkeypatch) -> list[str]:
    """Work in ``folder``, as a reader in theirs, with the page's ``<!-- file: NAME.py -->`` blocks
    saved there and importable; returns their names."""
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))
    files = [block for block in page.blocks if block.mark and block.mark[0] == "file"]
    for block in files:
        (folder / block.mark[1]).write_text(block.text + "\n")
    return [block.mark[1] for block in files]


@pytest.mark.slow  # whole runs, one epoch each
@pytest.mark.parametrize("page, block", RUN, ids=[str(block) for _, block in RUN])
def test_the_blocks_commands_run(page, block, tmp_path, monkeypatch):
    files = with_page_files(page, tmp_path, monkeypatch)
    monkeypatch.delenv("VAE_DATA", raising=False)
    try:
        for command in block.commands:
            code, printed = run(command, tmp_path)
            assert code == 0, f"{block}: `{command}` failed:\n{printed[-3000:]}"
            if words(command)[0] == "inference.train":
                assert "run directory: " in printed
                assert (newest_run(tmp_path) / "metrics.json").exists()
    finally:
        for name in files:  # the next page's module of the same name must be imported afresh
            sys.modules.pop(Path(name).stem, None)


# ---------------------------------------------------------------------------------------------
# Python


PYTHON = [(page, block) for page in ALL for block in page.blocks if block.language == "python"]


@pytest.mark.parametrize("page, block", PYTHON, ids=[str(block) for _, block in PYTHON])
def test_the_python_block_runs(page, block, tmp_path, monkeypatch):
    with_page_files(page, tmp_path, monkeypatch)
    exec(compile(block.text, str(block), "exec"), {"__name__": "docs_block"})  # noqa: S102 - the page's own code


# ---------------------------------------------------------------------------------------------
# the site


@pytest.mark.slow  # the whole site, API reference included
def test_the_site_builds_strictly(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-5000:]
    built = (tmp_path / "site" / "reference" / "config.html").read_text()
    assert "train.epochs" in built and "prior.components" in built  # the generated reference is there


# ---------------------------------------------------------------------------------------------
# numbers the pages state that a command gives


DATA = Path(os.environ.get("VAE_DATA", "/nonexistent"))


@pytest.mark.slow  # one epoch of MNIST and 500 test points at K=100: about 20 s
@pytest.mark.skipif(not (DATA / "mnist").is_dir(), reason="set VAE_DATA to the folder of the benchmark data sets")
def test_getting_starteds_mnist_line_gives_the_numbers_it_states(tmp_path):
    from conftest import compose_config
    from inference.runs import train

    text = (ROOT / "docs" / "getting-started.md").read_text()
    command = re.search(r'make run ARGS="(data=mnist [^"]*)"', text).group(1).replace("$VAE_DATA", str(DATA))
    stated = re.search(r"the guide proposal gives −([\d.]+) ± ([\d.]+) nats and the prior proposal −([\d.]+) ± ([\d.]+)", text)
    guide, prior = -float(stated.group(1)), -float(stated.group(3))
    metrics = train(compose_config(*command.split(), "train.progress=false", "train.device=cpu"), tmp_path)
    # the same seed and points: what differs is arithmetic, far below the last digit stated (0.1 nats)
    assert metrics["test"]["log_px"]["mean"] == pytest.approx(guide, abs=0.1)
    assert metrics["test"]["log_px_prior"]["mean"] == pytest.approx(prior, abs=0.1)
