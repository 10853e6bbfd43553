"""A local cloud for the demo and the tests: moto's EC2/SSM whose instances are real hosts
(network namespaces, overlay roots, systemd-nspawn) that run real HTCondor."""
