"""The layout keeps its promises: the import direction between packages, cheap imports, small
modules and a public API per package. Read statically (every import statement, including those
inside functions), so a violation fails here whether or not a test happens to run that code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("partitioning", "blocknerf", "streaming")
MAX_LINES = 600
"""No module over this many lines (STYLE.md: split a module that passes ~600 lines)."""


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the three packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` statement of ``path`` names."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _forbidden(module: str) -> tuple[str, ...]:
    """What ``module`` may not import: partitioning <- blocknerf <- streaming, the CLI on top."""
    if _under(module, "partitioning"):
        return ("blocknerf", "streaming", "torch")
    if _under(module, "blocknerf.cli") or module == "blocknerf.__main__":
        return ()
    if _under(module, "blocknerf"):
        return ("streaming", "blocknerf.cli")
    if _under(module, "streaming"):
        return ("blocknerf.cli", "blocknerf.presentation")
    raise AssertionError(module)


def test_the_layout_is_found() -> None:
    # Guards the other tests: an empty module list would make them pass vacuously.
    assert {"partitioning.plan", "blocknerf.store.block_store", "blocknerf.capture.transforms", "streaming.compositor"} <= set(MODULES)
    assert len(MODULES) > 80


@pytest.mark.parametrize("module", sorted(MODULES))
def test_import_direction(module: str) -> None:
    bad = sorted(name for name in _imports(MODULES[module]) for f in _forbidden(module) if _under(name, f))
    assert not bad, f"{module} imports {bad}, against partitioning <- blocknerf <- streaming (only blocknerf.cli imports everything)"


def test_the_direction_rule_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from streaming.compositor import Compositor\n")
    assert any(_under(n, f) for n in _imports(bad) for f in _forbidden("blocknerf.store.versions"))
    assert not any(_under(n, f) for n in _imports(bad) for f in _forbidden("blocknerf.cli.render"))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines (split it: at most {MAX_LINES})"


PACKAGE_INITS = sorted(m for m, p in MODULES.items() if p.name == "__init__.py")


@pytest.mark.parametrize("package", PACKAGE_INITS)
def test_every_package_lists_its_public_api(package: str) -> None:
    import importlib

    module = importlib.import_module(package)
    exported = getattr(module, "__all__", None)
    assert exported, f"{package} has no __all__"
    missing = [name for name in exported if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it does not have: {missing}"


@pytest.mark.parametrize(
    "package", ["partitioning", "blocknerf", "blocknerf.capture", "blocknerf.store", "blocknerf.model", "blocknerf.synth", "streaming"]
)
def test_importing_a_package_is_cheap(package: str) -> None:
    code = f"import sys, {package}; assert 'torch' not in sys.modules, 'imports torch'; assert 'streaming.compositor' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
