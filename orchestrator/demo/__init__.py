"""`make demo`: a whole pool on the sandbox, a burst of real jobs, the autoscaler at work.

`python -m orchestrator.demo [--keep] [--jobs N] [--summary-json PATH] [--png PATH]
[--timeout S]`. Modules: `flow` (the steps, teardown, Ctrl-C), `jobs` (the burst and its
HTCondor history), `monitor` (samples of EC2 and HTCondor, live progress), `summary` (the
numbers, from HTCondor's job history and the emulator's instance records) and `chart`.
"""
