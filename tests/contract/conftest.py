"""The contract's cases live in a plain module: let pytest explain its failed asserts."""

import pytest

pytest.register_assert_rewrite("tests.contract.store_contract")
