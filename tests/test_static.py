"""Static checks that catch what a run may not reach: a name shadowed by a later definition,
an import that no longer exists or is unused, an undefined name."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from pipeline import config


def test_pyflakes_finds_nothing():
    done = subprocess.run([sys.executable, "-m", "pyflakes", "pipeline", "jobs", "bench", "tests"],
                          cwd=config.REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and not done.stdout, done.stdout + done.stderr


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """The ``pipeline`` modules ``path`` imports, at any depth of its code (lazy ones too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        found |= {name for name in names if name in known and name != module}
    return found


def import_graph() -> dict[str, set[str]]:
    files = {}
    for path in (config.REPO_ROOT / "pipeline").rglob("*.py"):
        parts = path.relative_to(config.REPO_ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    known = set(files)
    return {module: _imports(path, module, known) for module, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_pipeline_has_no_import_cycle():
    """Lazy imports inside functions count: they are how the fine-tuning task and its Keras
    code once depended on each other."""
    graph = import_graph()
    assert "pipeline.finetune.fit" in graph and graph["pipeline.finetune.fit"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_every_entry_point_keeps_the_one_command_line_contract():
    """Each program a user runs (jobs/, and the library's ``python -m`` commands) parses with
    runtime.cli's base parser and runs through run_job: one error line, one set of exit codes,
    SIGTERM handled."""
    mains = [path for folder in ("jobs", "pipeline")
             for path in sorted((config.REPO_ROOT / folder).rglob("*.py"))
             if '__name__ == "__main__"' in path.read_text()]
    assert len(mains) >= 8, mains
    for path in mains:
        text = path.read_text()
        assert "run_job(main, parser())" in text and "base_parser(" in text, path
