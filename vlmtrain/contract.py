"""The batch contract every vlmtrain layer shares (data packs it, recipes build it, the model
and its losses read it): kept here, below them all, so no layer imports one above it."""

from __future__ import annotations

IGNORE_INDEX = -100  # a label the loss skips: prompt, image and padding positions
