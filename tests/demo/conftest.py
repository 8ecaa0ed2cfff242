"""Demo-area fixtures: one small generated demo data set shared by the generator tests."""

from __future__ import annotations

import pytest

from vlmdata.demo.dataset import generate_demo


@pytest.fixture(scope="session")
def demo_small(tmp_path_factory):
    """120 images at 64 px: 80 train, 20 val, 20 test (generated once per session)."""
    out = tmp_path_factory.mktemp("demo_small")
    generate_demo(out, images=120, seed=3, size=64, test=20, val=20, progress=False)
    return out
