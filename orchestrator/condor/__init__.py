"""The HTCondor adapter: pool and queue views through the official `htcondor` bindings on
the central manager, or `condor_* -json` over SSM or ssh from elsewhere (source.py,
remote.py; factory.py picks one), and the actions the autoscaler takes on startds
(actions.py). Records (records.py) and summaries (views.py) import no htcondor."""
