"""python -m orchestrator.demo: see orchestrator/demo/flow.py."""

from __future__ import annotations

import sys

from orchestrator.demo.flow import main

if __name__ == "__main__":
    sys.exit(main())
