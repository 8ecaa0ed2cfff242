"""Pre-flight checks, run by `vlmtrain launch` before any rank starts.

Inside a rank these mistakes surface only after the model is built (30 s for a tiny config,
minutes for a 7B one, on every rank): a missing shards / tokenizer / ids / export path, a batch
size that does not split into the recipe's stream mix, a stream kind the recipe does not make, a
filter that selects no row or names a column the index lacks, and a recipe whose columns the
shards do not carry. Every problem found is reported at once, each naming its config key.
"""

from __future__ import annotations

from pathlib import Path

from vlmdata.core import layout
from vlmdata.core.errors import DataError
from vlmtrain.errors import ConfigError
from vlmtrain.train.config import TrainConfig, resolve_streams


def preflight(cfg: TrainConfig) -> None:
    """Raise a ConfigError listing every problem `check_config` finds (nothing when none); print
    the notes (`kb_name_notes`) that do not stop a run."""
    import sys

    for note in config_notes(cfg):
        print(f"pre-flight: note: {note}", file=sys.stderr)
    problems = check_config(cfg)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        n = len(problems)
        raise ConfigError(f"pre-flight: {n} problem(s) before any rank starts:\n{lines}")


def check_config(cfg: TrainConfig) -> list[str]:
    """The problems a rank would hit with `cfg` (see the module doc); [] when none."""
    from vlmtrain.recipes import get_recipe

    problems = path_problems(cfg)
    try:
        recipe = get_recipe(cfg.recipe.name, **cfg.recipe.options)
    except ConfigError as e:
        return [*problems, f"recipe: {e}"]
    problems += recipe.config_problems(cfg.data)
    try:
        streams = resolve_streams(cfg.data, dict(recipe.mix))
    except DataError as e:
        return [*problems, str(e)]
    for i, s in enumerate(streams):
        if s.kind not in recipe.kinds:
            problems.append(
                f"data.streams[{i}].kind: {s.kind!r} is not a kind of recipe {recipe.name} "
                f"({list(recipe.kinds)})"
            )
    shards = Path(cfg.data.shards)
    if _is_local(cfg.data.shards) and (shards / layout.INDEX).is_file():
        problems += data_problems(shards, recipe, streams)
    return problems


def _is_local(path: str) -> bool:
    return "://" not in path


def path_problems(cfg: TrainConfig) -> list[str]:
    """Local paths the config names that are not there."""
    m, d = cfg.model, cfg.data
    out = []
    if not d.shards:
        out.append("data.shards: not set (a `vlmdata shard` output folder)")
    elif _is_local(d.shards) and not (Path(d.shards) / layout.INDEX).is_file():
        out.append(f"data.shards: no {layout.INDEX} in {d.shards} (not a `vlmdata shard` output)")
    tokenizer = m.tokenizer or m.lm
    if not tokenizer:
        out.append("model.tokenizer: not set (a local tokenizer dir/file; or model.lm)")
    elif not Path(tokenizer).exists():
        out.append(f"model.tokenizer: {tokenizer} does not exist")
    if m.lm and not Path(m.lm).is_dir():
        out.append(f"model.lm: {m.lm} is not a directory (a local Hugging Face checkpoint)")
    if m.vision_config is None:  # a named tower: the one open_clip naming rule, weights local
        from vlmdata.core.clip_source import resolve_clip

        try:
            resolve_clip(m.vision, m.vision_pretrained)
        except DataError as e:
            out.append(f"model.vision / vision_pretrained: {e}")
    if d.ids and not Path(d.ids).is_file():
        out.append(f"data.ids: {d.ids} does not exist")
    if d.subset and not Path(d.subset).is_file():
        out.append(f"data.subset: {d.subset} does not exist")
    if m.entity_encoder and not Path(m.entity_encoder).is_dir():
        out.append(f"model.entity_encoder: {m.entity_encoder} is not a directory (a local CLIP)")
    if m.entity_tokenizer and not Path(m.entity_tokenizer).exists():
        out.append(f"model.entity_tokenizer: {m.entity_tokenizer} does not exist")
    if cfg.init_projector and not Path(cfg.init_projector).is_file():
        out.append(f"init_projector: {cfg.init_projector} does not exist (LLaVA mm_projector.bin)")
    if cfg.init_from:
        from vlmtrain.train.checkpoint import find_export

        try:
            find_export(cfg.init_from)
        except FileNotFoundError as e:
            out.append(f"init_from: {e}")
    return out


def data_problems(shards: Path, recipe, streams) -> list[str]:
    """Columns the recipe reads and the rows each stream's filter selects, on the records table
    (what training iterates and a recipe reads as `sample["meta"]`)."""
    from vlmdata.shards.records import load_records
    from vlmtrain.data.train_data import stream_sizes

    records = load_records(shards)
    out = []
    for choices in recipe.required_columns():
        if not set(records.columns) & set(choices):
            want = " or ".join(repr(c) for c in choices)
            out.append(
                f"recipe {recipe.name}: reads column {want}, which the records of {shards} do "
                f"not have (columns: {sorted(records.columns)})"
            )
    try:
        stream_sizes(records, streams, where=str(shards))
    except DataError as e:
        out.append(str(e))
    return out


def config_notes(cfg: TrainConfig) -> list[str]:
    """Things worth knowing before a run that do not stop it (the KB name check)."""
    kb, shards = cfg.recipe.options.get("kb"), Path(cfg.data.shards)
    if not kb or not Path(kb).is_file() or not (shards / layout.INDEX).is_file():
        return []
    from vlmdata.shards.records import load_records

    records = load_records(shards)
    if not {"entity_id", "entity_name"} <= set(records.columns):
        return []
    return kb_name_notes(records, kb)


def kb_name_notes(records, kb_path: str | Path) -> list[str]:
    """Record entity names that the KB spells differently, and entity ids it lacks.

    The autover recipe trains on the KB's name (the trie's spelling), so a differing record
    name is a note, not an error; a record whose entity the KB lacks is skipped (counted) and
    could never be decoded, so it is a note with a count too.
    """
    import polars as pl

    pairs = records.select("entity_id", "entity_name").drop_nulls("entity_id").unique()
    ids = pairs["entity_id"].unique().to_list()
    try:
        kb = (
            pl.scan_parquet(kb_path)
            .select("entity_id", pl.col("entity_name").alias("kb_name"))
            .filter(pl.col("entity_id").is_in(ids))
            .collect()
        )
    except (pl.exceptions.PolarsError, OSError) as e:
        raise DataError(
            f"recipe.options.kb: not an entities table with entity_id and entity_name "
            f"(`vlmdata manifest oven-kb` writes one): {e}",
            file=str(kb_path),
        ) from e
    joined = pairs.join(kb, on="entity_id", how="left")
    notes = []
    missing = joined.filter(pl.col("kb_name").is_null())
    if missing.height:
        notes.append(
            f"{missing.height} entity ids of the records are not in {kb_path} (their records "
            f"are skipped; e.g. {missing['entity_id'].sort().head(3).to_list()})"
        )
    differ = joined.filter(
        pl.col("kb_name").is_not_null() & (pl.col("entity_name") != pl.col("kb_name"))
    ).sort("entity_id")
    if differ.height:
        eg = [f"{r['entity_id']}: {r['entity_name']!r} -> {r['kb_name']!r}"
              for r in differ.head(3).iter_rows(named=True)]  # fmt: skip
        notes.append(
            f"{differ.height} record entity names differ from the KB's (training targets and "
            f"the trie use the KB's): {'; '.join(eg)}"
        )
    return notes
