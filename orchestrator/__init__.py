"""htcpool: an HTCondor pool on AWS EC2, kept the right size by reading the queue."""

__version__ = "0.1.0"
