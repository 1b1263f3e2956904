"""The architecture's rules, checked on the code (docs/architecture.md, "Layers"). Issue 9's measures.

Every import of ours is read from the syntax tree, function-level ones included, and checked against the
layers below. A new package must be placed in LAYERS before it can be imported by anything.

    layer 3  aistack_hub                     the service app, API, admin page, hub configuration, CLI
    layer 2  job_runner.* (the job system)   |  spawner   |  aistack_lab (in the user's server)
    layer 1  job_runner.binding              a slice bound to a local process or a pod; NVML discovery
    layer 0  job_runner.scheduling           the pure scheduling core
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ("aistack_hub", "spawner", "job_runner", "aistack_lab")
SOURCES = {"aistack_hub": ROOT / "aistack_hub", "spawner": ROOT / "spawner", "job_runner": ROOT / "job_runner",
           "aistack_lab": ROOT / "labextension" / "aistack_lab"}

# component -> what it may import (besides itself)
CORE, BINDING = "job_runner.scheduling", "job_runner.binding"
ALLOWED = {
    CORE: set(),
    BINDING: {CORE},
    "job_runner": {CORE, BINDING},  # the job system: controller, executors, what runs inside a job
    "spawner": {CORE, BINDING},
    "aistack_lab": set(),
    "aistack_hub": {CORE, BINDING, "job_runner", "spawner"},
}

# Modules allowed over MAX_LINES, each with the reason it is one module.
MAX_LINES = 400
LONG_MODULES: dict[str, str] = {}


def component(module: str) -> str:
    for c in (CORE, BINDING):
        if module == c or module.startswith(c + "."):
            return c
    return module.split(".")[0]


def modules():
    for top, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            if "migrations" in path.parts or "node_modules" in path.parts:
                continue
            rel = path.relative_to(folder).with_suffix("")
            parts = [top, *rel.parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def imports_of(module: str, path: Path):
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if node.module is None and node.level:
                for a in node.names:
                    yield f"{name}.{a.name}", node.lineno
            else:
                yield name, node.lineno


def graph():
    edges = defaultdict(set)
    sites = []
    for module, path in modules():
        for target, line in imports_of(module, path):
            if target.split(".")[0] not in OURS:
                continue
            sites.append((module, target, f"{path.relative_to(ROOT)}:{line}"))
            edges[module].add(target)
    return edges, sites


def test_imports_go_down_only():
    _, sites = graph()
    bad = []
    for module, target, where in sites:
        src, dst = component(module), component(target)
        if src != dst and dst not in ALLOWED[src]:
            bad.append(f"{where}: {module} imports {target} ({src} may import only {sorted(ALLOWED[src]) or 'nothing of ours'})")
    assert not bad, "imports that run up or across a layer:\n" + "\n".join(bad)


def test_no_package_loops():
    """Between the packages of one top level (e.g. job_runner.controller <-> job_runner.executors)."""
    edges, _ = graph()
    pkg_edges = defaultdict(set)

    def pkg(m):
        p = m.split(".")
        return ".".join(p[:2])

    for src, targets in edges.items():
        for t in targets:
            a, b = pkg(src), pkg(t)
            if a != b:
                pkg_edges[a].add(b)
    loops, state = [], {}

    def visit(n, stack):
        state[n] = 1
        for m in sorted(pkg_edges.get(n, ())):
            if state.get(m) == 1:
                loops.append(" -> ".join(stack[stack.index(m):] + [m]) if m in stack else f"{n} -> {m}")
            elif m not in state:
                visit(m, stack + [m])
        state[n] = 2

    for n in sorted(pkg_edges):
        if n not in state:
            visit(n, [n])
    assert not loops, "package import loops:\n" + "\n".join(loops)


def test_modules_are_small_or_say_why():
    long = {}
    for module, path in modules():
        n = len(path.read_text().splitlines())
        if n > MAX_LINES and module not in LONG_MODULES:
            long[module] = n
    assert not long, f"modules over {MAX_LINES} lines with no stated reason (LONG_MODULES): {long}"
