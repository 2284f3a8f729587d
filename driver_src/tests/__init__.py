"""Tests of the DRA file driver (a package, so its helpers import relatively)."""
