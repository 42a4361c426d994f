"""The one exception the cluster tooling raises for conditions a user can fix."""
from __future__ import annotations


class ClusterError(Exception):
    """A problem to report as one line (a port in use, no Java 17, a checksum mismatch)."""
