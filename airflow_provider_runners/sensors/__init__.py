"""Sensors: wait for a free bench, a runner provisioned elsewhere, or a queue backlog (``runners.py``)."""
