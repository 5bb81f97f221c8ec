"""Test helpers shared by the test suite (importable as ``support`` with ``tests/`` on sys.path)."""
