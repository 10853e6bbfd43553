"""The pure policy: observed state in (model.Observation), a plan out (model.Plan).

No boto3, no htcondor, no clock: `strategies.plan(observation, config, now)` is what the live
loop and the simulator both call. Modules: model (data), config (settings), classify (the
workers' states), packing (jobs onto machines), forecast and spare (cores kept free),
binpack (our policy), scale_in, baselines (the old rule, ParallelCluster-like) and
strategies (the registry by name).
"""
