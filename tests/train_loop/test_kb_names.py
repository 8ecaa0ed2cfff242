"""Pre-flight reports record entity names that the KB (the trie's names) spells differently.

Fixture shapes: OVEN records carry `entity_text` (here the records' entity_name column, as
`vlmdata manifest oven` writes it); the KB is entities.parquet from Wiki6M (`wikipedia_title`
as entity_name), what `vlmdata build-trie --entities` builds the trie from.
"""

from __future__ import annotations

import polars as pl

from tests.train_loop.conftest import CONFIGS, data_overrides
from vlmtrain.train.config import load_config
from vlmtrain.train.preflight import kb_name_notes, preflight


def test_kb_name_notes_count_and_show_examples(tmp_path):
    records = pl.DataFrame({
        "entity_id": ["Q1", "Q1", "Q2", "Q3", None],
        "entity_name": ["Eiffel Tower", "Eiffel Tower", "Big ben", "Louvre", None],
    })  # fmt: skip
    kb = tmp_path / "entities.parquet"
    pl.DataFrame({"entity_id": ["Q1", "Q2"], "entity_name": ["Eiffel Tower", "Big Ben"]}
                 ).write_parquet(kb)  # fmt: skip
    notes = kb_name_notes(records, kb)
    assert notes[0].startswith("1 entity ids of the records are not in") and "['Q3']" in notes[0]
    assert notes[1].startswith("1 record entity names differ from the KB's")
    assert "Q2: 'Big ben' -> 'Big Ben'" in notes[1]
    same = pl.DataFrame({"entity_id": ["Q1"], "entity_name": ["Eiffel Tower"]})
    assert kb_name_notes(same, kb) == []


def test_preflight_prints_the_note_and_lets_the_run_start(dataset, tmp_path, capsys):
    # the loop shards' records: entity_id Q{i % 8}, entity_name = a shape name
    from vlmdata.shards.records import load_records

    recs = load_records(dataset["shards"]).select("entity_id", "entity_name").unique()
    kb = tmp_path / "entities.parquet"
    kb_rows = recs.filter(pl.col("entity_id") != "Q7").with_columns(
        pl.when(pl.col("entity_id") == "Q0")
        .then(pl.lit("Renamed"))
        .otherwise(pl.col("entity_name"))
        .alias("entity_name")
    )
    kb_rows.write_parquet(kb)
    over = data_overrides(dataset, tmp_path / "run") + [
        "data.filter={split: train}", f"recipe.options={{contrastive: true, kb: {kb}}}"
    ]  # fmt: skip
    cfg = load_config(CONFIGS / "autover_tiny.yaml", over)
    preflight(cfg)  # notes only: no error
    err = capsys.readouterr().err
    assert "pre-flight: note: 1 entity ids of the records are not in" in err
    assert "1 record entity names differ from the KB's" in err and "-> 'Renamed'" in err
