"""The import rules between the packages (STYLE.md, issue 2): checked on every test run."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(ROOT.glob("packages/*/src/*/**/*.py"))


def _imports(path: Path) -> list[tuple[int, str]]:
    """Absolute module names imported by a file (relative imports resolved), with line numbers."""
    tree = ast.parse(path.read_text(), filename=str(path))
    src = path.relative_to(ROOT).parts
    module_parts = list(src[src.index("src") + 1 :])
    module_parts[-1] = module_parts[-1].removesuffix(".py")
    package = module_parts[:-1] if module_parts[-1] != "__init__" else module_parts[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names] + [(node.lineno, base)]
    return found


def test_package_contracts_hold():
    """import-linter contracts in pyproject.toml: scf imports no sibling, ifas_model only scf.schema,
    scf.tensortree and scf.imaging, ifas_eval no training code."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "import-linter is part of the dev dependency group"
    proc = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_no_module_imports_a_cli_module():
    offenders = []
    for path in SOURCES:
        if path.stem == "cli" or "cli" in path.parent.name.split("."):
            continue
        for line, name in _imports(path):
            if name.split(".")[-1] == "cli" or ".cli." in f".{name}.":
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not offenders, offenders


def test_scanner_sees_the_sources():
    # Guard against the checks above passing vacuously.
    assert any(p.name == "schema.py" for p in SOURCES)
    assert {p.parts[p.parts.index("src") + 1] for p in SOURCES} == {"scf", "ifas_model", "ifas_eval"}
