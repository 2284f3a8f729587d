"""A single-node Kubernetes cluster of upstream binaries running as local processes."""

from localcluster.cluster import ClusterError, LocalCluster, UpResult

__all__ = ["ClusterError", "LocalCluster", "UpResult"]
