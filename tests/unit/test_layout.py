"""The package's seams hold: boto3 only in aws/ (and the sandbox's emulator), htcondor only
in condor/, the planner free of both and of the runtime, no private name imported across
packages, and modules a newcomer can read in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "orchestrator"
MODULES = sorted(ROOT.rglob("*.py"))


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import in the file, relative ones resolved."""
    package = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            out.append((module, [a.name for a in node.names]))
    return out


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT.parent))


def _top(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_each_adapter_library_is_imported_only_by_its_adapter(path: Path) -> None:
    where = _rel(path)
    for module, _ in _imports(path):
        if _top(module) in ("boto3", "botocore"):
            assert where.startswith(("orchestrator/aws/", "orchestrator/sandbox/")), \
                f"{where} imports {module}"
        if _top(module) in ("htcondor", "htcondor2", "classad", "classad2"):
            assert where.startswith("orchestrator/condor/"), f"{where} imports {module}"
        if _top(module) == "moto":
            assert where.startswith("orchestrator/sandbox/"), f"{where} imports {module}"


@pytest.mark.parametrize("path", sorted((ROOT / "autoscaler" / "planner").glob("*.py")),
                         ids=_rel)
def test_the_planner_is_pure(path: Path) -> None:
    allowed = ("orchestrator.autoscaler.planner", "orchestrator.vocabulary",
               "orchestrator.errors")
    for module, _ in _imports(path):
        if module.startswith("orchestrator"):
            assert module.startswith(allowed), f"{_rel(path)} imports {module}"
        else:
            assert _top(module) in ("__future__", "collections", "dataclasses", "enum",
                                    "functools", "math", "typing", "pydantic"), \
                f"{_rel(path)} imports {module}"


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_no_private_name_is_imported_across_packages(path: Path) -> None:
    here = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])
    for module, names in _imports(path):
        if not module.startswith("orchestrator") or module.rsplit(".", 1)[0] == here:
            continue
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"{_rel(path)} imports {private} from {module}"


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_modules_stay_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 400, _rel(path)


def test_the_vocabulary_is_defined_once() -> None:
    """Tag names and the instance-id pattern are literals in vocabulary.py only."""
    literals = ("htcpool:pool", "htcpool:role", "htcpool:idle-since", "htcpool:joined",
                "htcpool:missing-since", "htcpool:launched-by", "htcpool:version")
    for path in MODULES:
        if path.name == "vocabulary.py" or path.parent.name == "sandbox":
            continue
        text = path.read_text()
        for literal in literals:
            assert f'"{literal}"' not in text, f"{_rel(path)} spells {literal}"
        assert "i-[0-9a-f]" not in text and "i-[0-9A-Za-z]" not in text, _rel(path)
