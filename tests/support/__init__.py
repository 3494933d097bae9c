"""Helpers for the suite, one module per idea; fixtures stay in ``tests/conftest.py``."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
