"""The package's layout holds (docs/architecture.md): no import cycle between modules or between packages, and the
lower layers never import the higher ones (data and modeling never import training, evaluation, generation or
the pipeline). Read from the source with `ast`, so every import counts, also those inside functions; only the
imports under `if TYPE_CHECKING:` (never run) do not."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "textvae"
HIGHER = ("textvae.training", "textvae.evaluation", "textvae.generation", "textvae.pipeline", "textvae.cli",
          "textvae.plotting")
PACKAGES = ("textvae.data", "textvae.modeling", "textvae.training", "textvae.evaluation", "textvae.generation")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imported(path: Path) -> set[str]:
    """The textvae modules a file imports (relative imports resolved; `from package import module` counts as the
    module), wherever the import statement stands, except under `if TYPE_CHECKING:`."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if is_type_checking(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("textvae"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            if base.startswith("textvae"):
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    is_module = (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py").is_file() or \
                        (PACKAGE.parent / Path(*candidate.split(".")) / "__init__.py").is_file()
                    found.add(candidate if is_module else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    return {module_name(path): imported(path) for path in PACKAGE.rglob("*.py")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a list of nodes (first = last), or None."""
    done, path = set(), []

    def walk(node: str) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph.get(node, ())):
            cycle = walk(target)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = walk(start)
        if cycle:
            return cycle
    return None


def package_of(module: str) -> str:
    return next((package for package in PACKAGES if module == package or module.startswith(package + ".")), module)


def test_the_modules_import_each_other_in_no_cycle():
    graph = import_graph()
    assert len(graph) > 40 and "textvae.training.trainer" in graph
    # an import of a package runs its __init__, which imports its modules: count that edge too
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_packages_import_each_other_in_no_cycle():
    graph: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        graph.setdefault(package_of(module), set()).update(package_of(target) for target in targets)
    for package, targets in graph.items():
        targets.discard(package)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_data_and_modeling_never_import_a_higher_layer():
    graph = import_graph()
    for module, targets in graph.items():
        if package_of(module) in ("textvae.data", "textvae.modeling"):
            upward = sorted(target for target in targets if target.startswith(HIGHER))
            assert not upward, f"{module} imports {upward}"
        if package_of(module) == "textvae.data":  # data sits below the model too
            assert not [target for target in targets if target.startswith("textvae.modeling")], module


def test_the_check_sees_imports_inside_functions_and_skips_type_checking_ones():
    assert "textvae.pipeline" in import_graph()["textvae.cli"]  # imported inside run()
    assert "textvae.training.trainer" not in import_graph()["textvae.training.parts"]  # under TYPE_CHECKING only
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
