"""The project's Hadoop/YARN cluster: native Java processes on loopback, or Docker Compose.

``python -m pipeline.cluster up|down|status|env`` (and ``make cluster-up`` ...) are the entry
points; docs/cluster.md describes them.
"""
