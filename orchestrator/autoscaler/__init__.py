"""The autoscaler, in two parts whose folders show what they may import:

- `planner/`: the pure policy, `plan(Observation, AutoscalerConfig, now) -> Plan`; it imports
  neither boto3 nor htcondor and reads no clock (the simulator calls it too);
- `runtime/`: what observes the pool, carries out a plan and loops (observe, executor, loop,
  lease, metrics), acting through two small interfaces (ports.py) that the AWS and HTCondor
  adapters implement; `runtime/build.py` wires the real ones.
"""
