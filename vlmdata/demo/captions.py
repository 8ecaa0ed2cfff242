"""Captions for the demo images: several templates and synonyms, every one stating all attributes.

Five captions per image are drawn from different templates with independently chosen synonyms,
so the queries of one image differ in wording while each names shape, colour, size, position and
background (and nothing else), as a Flickr30k annotator's five sentences would differ.
"""

from __future__ import annotations

import re

import numpy as np

SHAPE_WORDS = {
    "circle": ("circle", "disc", "round dot"),
    "square": ("square", "square block", "box"),
    "triangle": ("triangle", "triangle shape", "three-sided shape"),
    "star": ("star", "five-pointed star", "star shape"),
    "diamond": ("diamond", "rhombus", "diamond shape"),
    "cross": ("cross", "plus sign", "cross shape"),
}
SIZE_WORDS = {
    "small": ("small", "little", "tiny"),
    "large": ("large", "big", "huge"),
}
POSITION_WORDS = {
    "left": ("on the left", "at the left side", "to the left"),
    "right": ("on the right", "at the right side", "to the right"),
    "top": ("at the top", "near the top", "in the upper part"),
    "bottom": ("at the bottom", "near the bottom", "in the lower part"),
    "center": ("in the center", "in the middle", "at the centre"),
}
TEMPLATES = (
    "a {size} {color} {shape} {position} on a {background} background",
    "{background} background with a {size} {color} {shape} {position}",
    "there is a {color} {shape} {position} , it is {size} and the background is {background}",
    "a picture of a {size} {color} {shape} against a {background} backdrop {position}",
    "{position} a {size} {color} {shape} sits on {background}",
    "a {color} {shape} of {size} size placed {position} of a {background} image",
    "on a plain {background} background , a {size} {color} {shape} {position}",
)


def tokenize(raw: str) -> list[str]:
    """Karpathy-style tokens: lower-case words, punctuation dropped (as in dataset_*.json)."""
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", raw.lower())


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def caption(attrs: dict[str, str], template: str, rng: np.random.Generator) -> str:
    """One raw sentence for `attrs` from `template`, synonyms drawn from `rng`."""
    text = template.format(
        shape=_pick(rng, SHAPE_WORDS[attrs["shape"]]),
        size=_pick(rng, SIZE_WORDS[attrs["size"]]),
        position=_pick(rng, POSITION_WORDS[attrs["position"]]),
        color=attrs["color"],
        background=attrs["background"],
    )
    text = text.replace(" , ", ", ")
    return text[0].upper() + text[1:] + "."


def captions(attrs: dict[str, str], rng: np.random.Generator, n: int = 5) -> list[str]:
    """`n` captions from `n` distinct templates (so no two share a sentence frame)."""
    order = rng.permutation(len(TEMPLATES))[:n]
    return [caption(attrs, TEMPLATES[i], rng) for i in order]
