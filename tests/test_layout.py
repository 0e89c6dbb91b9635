"""The shape of the code: the layers and wings import only those below them, no import loop, the loader without any
stage module, and no function a reader cannot hold in their head (radon cyclomatic complexity at most 15)."""
import ast
import subprocess
import sys
from collections import defaultdict

from tests.conftest import REPO

PACKAGES = {"schemas": "curate.schemas", "tasks": "curate.tasks", "flows": "curate.flows"}
# tasks/ wings from the bottom up: each imports only those before it (and schemas).
WINGS = ("engine", "text", "train", "report", "ingest", "dedup", "classify", "tokens", "mix", "learn")
STAGES = ("ingest", "dedup", "classify", "tokens", "mix", "learn")


def _modules() -> dict[str, object]:
    out = {}
    for top, name in PACKAGES.items():
        for f in sorted((REPO / top).rglob("*.py")):
            rel = f.relative_to(REPO / top).with_suffix("")
            out[".".join([name, *rel.parts]).removesuffix(".__init__")] = f
    return out


def _imports() -> dict[str, set[str]]:
    """Every module of ours each module imports, at its top or inside a function."""
    mods, edges = _modules(), defaultdict(set)
    for mod, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("curate"):
                named = [t for t in (f"{node.module}.{a.name}" for a in node.names) if t in mods]
                targets = named or [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            edges[mod] |= {t for t in targets if t in mods and t != mod}
    return edges


def _wing(module: str) -> str:
    parts = module.split(".")
    return parts[2] if parts[1] == "tasks" and len(parts) > 3 else parts[1]


def test_layers_and_wings_import_only_what_is_below_them():
    wrong = []
    for mod, targets in _imports().items():
        layer = mod.split(".")[1]
        for t in targets:
            if layer == "schemas" and not t.startswith("curate.schemas"):
                wrong.append((mod, t, "schemas import nothing of ours"))
            if layer == "tasks" and t.startswith("curate.flows"):
                wrong.append((mod, t, "tasks never import flows"))
            if layer == "tasks" == t.split(".")[1] and _wing(mod) in WINGS and _wing(t) in WINGS \
                    and WINGS.index(_wing(t)) > WINGS.index(_wing(mod)):
                wrong.append((mod, t, f"the {_wing(mod)} wing is below {_wing(t)}"))
    assert not wrong, wrong
    assert {_wing(m) for m in _modules() if m.startswith("curate.tasks.")} - {"tasks"} == set(WINGS), \
        "every folder of tasks/ is a wing of the order"


def test_no_import_loop():
    edges, index, low, stack, on, loops = _imports(), {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for u in edges.get(v, ()):
            if u not in index:
                visit(u)
                low[v] = min(low[v], low[u])
            elif u in on:
                low[v] = min(low[v], index[u])
        if low[v] == index[v]:
            component = []
            while True:
                u = stack.pop()
                on.discard(u)
                component.append(u)
                if u == v:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for v in _modules():
        if v not in index:
            visit(v)
    assert not loops, loops


def test_the_loader_imports_no_stage_module_and_no_prefect():
    code = ("import sys, curate.tasks.train.loader; print('\\n'.join(m for m in sys.modules if m.startswith("
            "('curate.', 'prefect'))))")
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    assert "curate.tasks.train.loader" in loaded
    stage_modules = [m for m in loaded if m.startswith("prefect") or m.startswith("curate.flows")
                     or (m.startswith("curate.tasks.") and _wing(m) in STAGES)]
    assert not stage_modules, stage_modules


def test_no_function_above_complexity_15():
    import radon.complexity as radon
    too_complex = []
    for f in _modules().values():
        for block in radon.cc_visit(f.read_text(encoding="utf-8")):
            if block.complexity > 15:
                too_complex.append(f"{f.relative_to(REPO)}:{block.lineno} {block.name} ({block.complexity})")
    assert not too_complex, too_complex
