"""Fixtures for the native-core tests: offline tiktoken oracles (see native_oracles.py)."""

import pytest
import tiktoken
from native_oracles import oracle


@pytest.fixture(scope="session")
def o200k() -> tiktoken.Encoding:
    return oracle("o200k_base")


@pytest.fixture(scope="session")
def cl100k() -> tiktoken.Encoding:
    return oracle("cl100k_base")
