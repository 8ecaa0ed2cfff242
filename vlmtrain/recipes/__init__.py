"""Recipe registry: `get_recipe(name, **options)` -> a Recipe (see recipes/base.py).

The recipes check their own names and options: `get_recipe` fills the recipe's typed `Options`
dataclass (an unknown key or a value of the wrong type is a ConfigError naming
`recipe.options.KEY`; `load_config` adds the file). Recipes import lazily, so listing names
costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

from vlmtrain.errors import ConfigError
from vlmtrain.recipes.base import Recipe, RecipeContext, collate_examples
from vlmtrain.typed import from_dict

RECIPES = {
    "grace": "vlmtrain.recipes.grace:GraceRecipe",
    "fromage": "vlmtrain.recipes.fromage:FromageRecipe",
    "caption": "vlmtrain.recipes.caption:CaptionRecipe",
    "llava": "vlmtrain.recipes.llava:LlavaRecipe",
    "autover": "vlmtrain.recipes.autover:AutoverRecipe",
}

__all__ = [
    "RECIPES",
    "Recipe",
    "RecipeContext",
    "collate_examples",
    "get_recipe",
    "recipe_class",
    "recipe_options",
]


def recipe_class(name: str) -> type[Recipe]:
    """The Recipe class registered as `name`; an unknown name is a ConfigError listing them."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose from {sorted(RECIPES)}")
    module, cls = RECIPES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def recipe_options(name: str, options: dict[str, Any]) -> Any:
    """Recipe `name`'s typed Options from a mapping; a ConfigError names a bad key or value."""
    return from_dict(recipe_class(name).Options, dict(options), "recipe.options")


def get_recipe(name: str, **options: Any) -> Recipe:
    """The recipe `name` with its options (e.g. get_recipe("llava", stage=2)), checked against
    the recipe's `Options` (types, unknown keys, values) before it is built."""
    return recipe_class(name)(recipe_options(name, options))
