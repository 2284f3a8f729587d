"""Tests on a real multi-node cluster where the demo has converged (see conftest.py)."""
