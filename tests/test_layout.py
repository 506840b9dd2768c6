"""The package layout's rules, read from the source: dependencies flow one way between the
subpackages of ``inference``, no module imports another's private name, and each package says
what lives in it."""

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "guides", "inference")
# Lowest first: a module may import from its own layer and those before it, never after.
LAYERS = ["models", "guides", "inference.data", "inference.estimators", "inference.training", "inference.runs", "inference"]


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, str]]:
    """(module imported from, name imported) for each project import of a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(parts + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] in PACKAGES:
                found += [(source, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names if alias.name.split(".")[0] in PACKAGES]
    return found


def _layer(module: str) -> int:
    return max(i for i, layer in enumerate(LAYERS) if module == layer or module.startswith(layer + "."))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_flow_down_the_layers_and_use_public_names(name):
    for source, imported in _imports(name, MODULES[name]):
        target = f"{source}.{imported}" if f"{source}.{imported}" in MODULES else source
        assert not imported.startswith("_"), f"{name} imports the private name {imported} from {source}"
        assert _layer(target) <= _layer(name), f"{name} (layer {LAYERS[_layer(name)]}) imports {target}, a layer above it"


def test_no_import_cycles_among_modules():
    graph = {}
    for name, path in MODULES.items():
        targets = set()
        for source, imported in _imports(name, path):
            target = f"{source}.{imported}" if f"{source}.{imported}" in MODULES else source
            if target != name and not name.startswith(target + "."):  # a module's own package is its parent, not a peer
                targets.add(target)
        graph[name] = targets

    def visit(node, stack):
        for nxt in graph.get(node, ()):
            assert nxt not in stack, f"import cycle: {' -> '.join(stack[stack.index(nxt):] + [nxt])}"
            if nxt not in done:
                visit(nxt, stack + [nxt])
        done.add(node)

    done = set()
    for name in graph:
        visit(name, [name])


@pytest.mark.parametrize("package", sorted(n for n, p in MODULES.items() if p.name == "__init__.py"))
def test_each_package_says_what_lives_in_it_and_exports_it(package):
    module = importlib.import_module(package)
    assert (module.__doc__ or "").strip(), f"{package}/__init__.py has no docstring"
    assert module.__all__, f"{package} lists no public names"
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.__all__ names {name}, which it does not define"


def test_the_distribution_lists_every_package_and_ships_the_configs():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(path.parent.relative_to(ROOT).parts) for package in PACKAGES for path in (ROOT / package).rglob("__init__.py")}
    assert set(setuptools["packages"]) == found | {"inference.conf"}
    assert setuptools["package-dir"] == {"inference.conf": "conf"}
