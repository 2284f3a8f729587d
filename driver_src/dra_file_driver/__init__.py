"""DRA kubelet plugin that offers node-local files as devices."""

__version__ = "0.1.0"
