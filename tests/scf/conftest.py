"""Fixtures shared by the scf tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def face():
    """A small real face photo (Eileen Collins, public domain, from scikit-image) as an RGB array."""
    import cv2
    from skimage import data

    return cv2.resize(data.astronaut()[20:260, 110:340], (115, 120))
