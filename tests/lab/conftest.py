"""Fixtures for the lab tests (helpers live in `lab.helpers`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.helpers import LAB_UNAVAILABLE, Overlay, build_overlay, lab_in


@pytest.fixture(scope="module")
def overlay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Overlay]:
    if LAB_UNAVAILABLE is not None:
        pytest.skip(f"lab unavailable: {LAB_UNAVAILABLE}")
    with lab_in(tmp_path_factory.mktemp("lab"), hosts=2) as lab:
        yield build_overlay(lab)
