"""bench/security_attacks.py describes exactly the attack tests it runs."""

from __future__ import annotations

import ast

from bench.security_attacks import ATTACKS, FILES, REPO


def test_every_attack_test_is_described_and_every_description_names_a_test() -> None:
    tests = {node.name for f in FILES
             for node in ast.parse((REPO / f).read_text()).body
             if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}
    assert set(ATTACKS) == tests, {"undescribed": tests - set(ATTACKS),
                                   "no such test": set(ATTACKS) - tests}

