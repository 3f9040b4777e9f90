"""Moved: the store contract (random sequences against the model included) is tests/contract.

The helpers stay importable from here for tests/integration/test_sharded.py.
"""

from tests.contract.records import BASE, DAY, random_records

__all__ = ["BASE", "DAY", "random_records"]
