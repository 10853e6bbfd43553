"""The autoscaler's runtime: observe EC2 and HTCondor, ask the planner, act, log, repeat.

observe.py assembles an Observation; executor.py carries out a Plan through the ports
(ports.py: a worker cloud, a condor actuator; fakes.py records what was asked); loop.py is
the reconcile loop and its metrics; lease.py keeps one autoscaler per pool; build.py builds
what `htcpool autoscale`, `htcpool scale`, the demo and the benchmarks share.
"""
