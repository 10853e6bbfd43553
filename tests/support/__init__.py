"""Helpers shared by the test suites: paths (paths.py), the sandbox (sandbox.py), the shared
pool and its jobs (pool.py), policy builders (policy.py), CLI assertions (cli.py), the
Ansible check-mode harness (ansible.py), IAM analysis (iam.py) and bad-input cases
(bad_input.py). Fixtures live in the conftest.py files; these modules hold no fixtures."""
