"""Recipe registry: `get_recipe(name, **options)` -> a Recipe (see recipes/base.py).

Recipes import lazily, so listing names costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

from vlmtrain.recipes.base import Recipe, RecipeContext, collate_examples

RECIPES = {
    "grace": "vlmtrain.recipes.grace:GraceRecipe",
    "fromage": "vlmtrain.recipes.fromage:FromageRecipe",
    "caption": "vlmtrain.recipes.caption:CaptionRecipe",
    "llava": "vlmtrain.recipes.llava:LlavaRecipe",
    "autover": "vlmtrain.recipes.autover:AutoverRecipe",
}

__all__ = ["RECIPES", "Recipe", "RecipeContext", "collate_examples", "get_recipe"]


def get_recipe(name: str, **options: Any) -> Recipe:
    """The recipe `name` with its options (e.g. get_recipe("llava", stage=2))."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {sorted(RECIPES)}")
    module, cls = RECIPES[name].split(":")
    return getattr(importlib.import_module(module), cls)(**options)
