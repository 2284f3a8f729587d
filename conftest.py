"""Root conftest: every test session can ask for the local cluster's fixtures."""

pytest_plugins = ["localcluster.pytest_plugin"]
