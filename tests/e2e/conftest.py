"""The end-to-end tests' shared fixture: one lab of two hosts per test module (modules that
need another lab define their own `lab`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e.support import E2ELab, lab_up


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2ELab]:
    """`neutrino lab up --hosts 2` for the module, torn down after its last test."""
    with lab_up(tmp_path_factory, hosts=2) as lab:
        yield lab
