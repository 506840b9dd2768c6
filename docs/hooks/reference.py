"""MkDocs hook: the configuration reference, written at build time from what the runs read.

``reference/config.md`` holds the marker ``<!-- generated: configuration keys -->``; this hook
replaces it with one table per part of the config:

- ``z_dim`` and the other top-level keys of ``conf/train.yaml``, with their comments;
- ``train.*`` and ``evaluation.*`` from the dataclasses of ``inference/schema.py`` (type, default,
  and the one line of help each field carries in ``metadata["help"]``);
- every option of every group (``conf/GROUP/NAME.yaml``): its keys with their values there, the
  type from the signature of the class its ``_target_`` names, and the meaning from the key's
  comment in the YAML file, else from the class's ``:param KEY:``;
- the experiment presets, each with its description and the overrides it makes.

Nothing here is copied by hand, so the page follows the code: a key added to a schema or a YAML
file appears on the next build, and a ``_target_`` that does not import fails the build.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import re
import typing
from pathlib import Path

import yaml

MARKER = "<!-- generated: configuration keys -->"
CONF = Path(__file__).resolve().parents[2] / "conf"
# Groups in the order a reader meets them (conf/train.yaml's defaults list), then the rest.
ORDER = ["data", "model", "prior", "likelihood", "encoder", "decoder", "guide", "transition", "corruption",
         "objective", "optim", "schedule", "evaluation/methods", "logger", "hydra/launcher", "experiment"]


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, configuration_reference())


def configuration_reference() -> str:
    sections = [top_level(), schema_section("train", "TrainSchema"), schema_section("evaluation", "EvaluationSchema")]
    groups = sorted({str(path.parent.relative_to(CONF)) for path in CONF.glob("**/*.yaml") if path.parent != CONF})
    groups = [group for group in ORDER if group in groups] + [group for group in groups if group not in ORDER and group != "hydra"]
    sections += [experiments() if group == "experiment" else group_section(group) for group in groups]
    return "\n\n".join(sections)


def cell(text) -> str:
    """A value as a Markdown table cell, in code (a pipe inside a code span does not split the row)."""
    if text is None or text == "":
        return ""
    return "`" + str(text) + "`"


def prose(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def yaml_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return str(value)


def type_name(annotation) -> str:
    if annotation is inspect.Parameter.empty:
        return ""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        if issubclass(annotation, str) and annotation is not str:  # the schema's str enums: their choices
            return " | ".join(member.value for member in annotation)
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("NoneType", "None")


def comments(text: str) -> tuple[str, dict[str, str]]:
    """A YAML file's leading comment (its description) and each key's inline comment."""
    description, inline, leading = [], {}, True
    for line in text.splitlines():
        if leading and line.startswith("#"):
            if not line.startswith("# @package"):
                description.append(line.lstrip("# ").rstrip())
            continue
        leading = False
        match = re.match(r"^\s*([A-Za-z_][\w]*):.*?\s#\s*(.*)$", line)
        if match:
            inline[match.group(1)] = match.group(2).strip()
    return " ".join(part for part in description if part), inline


def param_docs(target) -> dict[str, str]:
    """What a class (its own docstring and its own ``__init__``'s) or function says of each argument:
    ``:param [type] NAME: text`` as the suite writes it, or ``NAME (type): text`` under ``Args:`` as
    torch does."""
    own_init = target.__dict__.get("__init__") if inspect.isclass(target) else None
    text = (inspect.getdoc(target) or "") + "\n\n" + (inspect.cleandoc(own_init.__doc__) if own_init is not None and own_init.__doc__ else "")
    found = {}
    for match in re.finditer(r"^\s*(\w+) \([^)]*\):(.*?)(?=\n\s*\w+ \([^)]*\):|\n\s*\n|\Z)", text, re.S | re.M):
        found[match.group(1)] = prose(match.group(2))
    for match in re.finditer(r":param (?:[\w\[\], .|]+ )?(\w+):(.*?)(?=\n\s*:|\n\s*\n|\Z)", text, re.S):
        found[match.group(1)] = prose(match.group(2))
    return found


def signature_of(target) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return {}


def resolve(path: str):
    from hydra.utils import get_object  # as Hydra resolves a _target_: a class, a function or a classmethod

    return get_object(path)


def top_level() -> str:
    _, inline = comments((CONF / "train.yaml").read_text())
    entry = yaml.safe_load((CONF / "train.yaml").read_text())
    rows = [f"| {cell(key)} | {type_name(type(value))} | {cell(yaml_value(value))} | {prose(inline.get(key, ''))} |"
            for key, value in entry.items() if key != "defaults"]
    choices = [f"`{item}`" if isinstance(item, str) else f"`{next(iter(item))}`" for item in entry["defaults"]]
    return ("## Top level\n\nThe entry config `conf/train.yaml` composes, in this order: " + ", ".join(choices)
            + ". A group is chosen with `GROUP=OPTION`; its keys are set with `GROUP.KEY=VALUE`.\n\n"
            + "| key | type | default | meaning |\n|---|---|---|---|\n" + "\n".join(rows))


def schema_section(name: str, schema: str) -> str:
    cls = getattr(importlib.import_module("inference.schema"), schema)
    hints = typing.get_type_hints(cls)
    rows = []
    for field in dataclasses.fields(cls):
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        if isinstance(default, enum.Enum):
            default = default.value  # an enum member: its name
        rows.append(f"| {cell(f'{name}.{field.name}')} | {cell(type_name(hints[field.name]))} | {cell(yaml_value(default))} | {prose(field.metadata.get('help', ''))} |")
    doc = prose(inspect.getdoc(cls) or "")
    return (f"## `{name}.*`\n\n{doc} Types are checked when the config is composed (`inference/schema.py`).\n\n"
            "| key | type | default | meaning |\n|---|---|---|---|\n" + "\n".join(rows))


def _schema_help() -> dict[str, str]:
    from inference.schema import EvaluationSchema

    return {field.name: field.metadata.get("help", "") for field in dataclasses.fields(EvaluationSchema)}


SCHEMA_HELP = _schema_help()


def group_section(group: str) -> str:
    parts = [f"## `{group}`"]
    if group == "evaluation/methods":
        parts.append("Each file is one entry of `evaluation.methods`: added with `+evaluation/methods=NAME` "
                     "(on by default: the files that `conf/evaluation/default.yaml` lists), its options set with "
                     "`evaluation.methods.NAME.KEY=VALUE`. `${evaluation.…}` reads the shared key of that name.")
    for path in sorted((CONF / group).glob("*.yaml")):
        parts.append(option_section(group, path))
    return "\n\n".join(parts)


def option_section(group: str, path: Path) -> str:
    text = path.read_text()
    description, inline = comments(text)
    values = yaml.safe_load(text) or {}
    target = values.get("_target_")
    cls = resolve(target) if isinstance(target, str) else None
    prefix = "evaluation.methods." + path.stem if group == "evaluation/methods" else group.replace("/", ".")
    choose = f"`+evaluation/methods={path.stem}`" if group == "evaluation/methods" else f"`{group}={path.stem}`"
    head = f"### {choose}\n\n" + (prose(description) + " " if description else "") + (f"Class: `{target}`." if target else "")
    package_global = "# @package _global_" in text
    rows = option_rows("" if package_global else prefix, values, cls, inline)
    if not rows:
        return head + " No keys of its own."
    return head + "\n\n| key | type | default | meaning |\n|---|---|---|---|\n" + "\n".join(rows)


def option_rows(prefix: str, values: dict, cls, inline: dict[str, str]) -> list[str]:
    """A row per key; a key whose value is an object of its own (``_target_``) gives a row per key of it."""
    parameters = signature_of(cls) if cls is not None else {}
    documented = param_docs(cls) if cls is not None else {}
    rows = []
    for key, value in values.items():
        if key in ("defaults", "_target_", "_partial_"):
            continue
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and isinstance(value.get("_target_"), str):
            rows += option_rows(name, value, resolve(value["_target_"]), inline)
            continue
        parameter = parameters.get(key)
        kind = type_name(parameter.annotation) if parameter is not None else ""
        if not kind and value is not None and not (isinstance(value, str) and value.startswith("${")):
            kind = type(value).__name__
        meaning = inline.get(key) or documented.get(key, "")
        shared = re.fullmatch(r"\$\{evaluation\.(\w+)\}", value) if isinstance(value, str) else None
        if shared and not meaning:  # an option read from the shared key of its old name: that key's help
            meaning = f"`evaluation.{shared.group(1)}`: " + SCHEMA_HELP.get(shared.group(1), "")
        rows.append(f"| {cell(name)} | {cell(kind)} | {cell(yaml_value(value))} | {prose(meaning)} |")
    return rows


def experiments() -> str:
    parts = ["## `experiment`", "A preset sets the keys below over the defaults (`experiment=NAME`); any of them can "
             "still be overridden on the command line after it."]
    for path in sorted((CONF / "experiment").glob("*.yaml")):
        description, _ = comments(path.read_text())
        text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#") or not line.strip())
        body = "\n".join(line for line in text.splitlines() if line.strip())
        parts.append(f"### `experiment={path.stem}`\n\n{prose(description)}\n\n```yaml\n{body}\n```")
    return "\n\n".join(parts)
