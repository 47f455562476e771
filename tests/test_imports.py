"""The package's shape, read from its source with ``ast``: no import loop between imgai's
modules, and every framework branch behind the backend seam (:mod:`imgai.backend`)."""

from __future__ import annotations

import ast

from conftest import REPO

PACKAGE = REPO / "src" / "imgai"
FRAMEWORKS = ("tensorflow", "jax", "torch")


def _modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(PACKAGE.glob("*.py"))}


def _imported_modules(tree: ast.Module, known: set[str]) -> set[str]:
    """imgai modules ``tree`` imports anywhere: at the top and inside functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "imgai" and len(parts) > 1 and parts[1] in known:
                found.add(parts[1])
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop in ``graph``, as the list of modules around it, or None."""
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> list[str] | None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return trail[trail.index(target) :] + [target]
            if target not in state:
                loop = visit(target, trail + [target])
                if loop:
                    return loop
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            loop = visit(module, [module])
            if loop:
                return loop
    return None


def test_no_import_loop_between_modules():
    modules = _modules()
    graph = {name: _imported_modules(tree, set(modules)) - {name} for name, tree in modules.items()}
    assert "batches" in graph["data"] and "data" in graph["cache"]  # imports inside functions count
    assert not graph["batches"] & {"data", "cache"}  # batches know stores only by what they answer
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_a_loop():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def _is_backend_name_call(node: ast.AST) -> bool:
    """``keras.backend.backend()`` (or ``backend.backend()``): which framework runs."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "backend"
        and isinstance(node.func.value, (ast.Attribute, ast.Name))
        and (getattr(node.func.value, "attr", None) or getattr(node.func.value, "id", None)) == "backend"
    )


def _seam_violations(name: str, tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        imported = []
        if isinstance(node, ast.Import):
            imported = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        private = [m for m in imported if m.split(".")[0] in FRAMEWORKS or m.startswith("keras.src")]
        if private:
            found.append(f"{name}.py:{node.lineno} imports {private[0]}")
        # Branching on the backend: comparing its name, or keeping it in a variable to compare later.
        if isinstance(node, ast.Compare) and any(_is_backend_name_call(n) for n in ast.walk(node)):
            found.append(f"{name}.py:{node.lineno} compares keras.backend.backend()")
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and _is_backend_name_call(node.value):
            found.append(f"{name}.py:{node.lineno} keeps keras.backend.backend() to branch on")
        if isinstance(node, ast.Attribute) and node.attr == "jax_state_sync":
            found.append(f"{name}.py:{node.lineno} calls a JAX-only method")
    return found


# The backend seam, and the distribution seam beside it: each backend has its own engine for
# several devices (JAX DataParallel, TensorFlow MirroredStrategy, none for torch).
# backend: every Keras-backend branch. distribute: the distribution engines of each backend.
# export: TensorFlow's LiteRT converter options (tf.lite.Optimize, tf.float16) on every backend.
SEAMS = ("backend", "distribute", "export")


def test_framework_branches_live_only_in_the_backend_seam():
    modules = _modules()
    violations = [
        v for name, tree in modules.items() if name not in SEAMS for v in _seam_violations(name, tree)
    ]
    assert violations == []
    assert _seam_violations("backend", modules["backend"])  # the check does see the seam's own branches


def test_the_seam_check_sees_each_kind_of_branch():
    code = (
        "import keras\n"
        "def f():\n"
        "    import tensorflow as tf\n"
        "    from keras.src.utils import file_utils\n"
        "    if keras.backend.backend() == 'jax':\n"
        "        pass\n"
        "    name = keras.backend.backend()\n"
        "    return {'backend': keras.backend.backend()}\n"  # reading the name for a report is fine
    )
    assert len(_seam_violations("example", ast.parse(code))) == 4
