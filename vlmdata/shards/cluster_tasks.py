"""The engine tasks of the partitioned plan (cluster_plan.py has the order and the why).

Each task is a module-level function of one small tuple (the Scratch folder, a partition
number, the image source and options), so Spark, Ray and a process pool all run it; it reads
the pieces earlier stages wrote and writes its own (cluster_files.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlmdata.core.keyset import HashSet
from vlmdata.core.record import stored_under
from vlmdata.shards.cluster_files import (
    EDGE,
    HASH,
    IK,
    PAIR,
    REF,
    REF_SHARD,
    Scratch,
    load_arrays,
    load_tables,
    ref_arrays,
    refs_of,
    save_array,
    save_table,
    split_by_bucket,
)
from vlmdata.shards.cluster_links import (
    DEST,
    component_buckets,
    row_destinations,
    save_adjacency,
)
from vlmdata.shards.compact import digest_hashes, value_hashes
from vlmdata.shards.image_sources import plan_task
from vlmdata.shards.images import ImageInfo
from vlmdata.shards.prepare import ImageProblem, Prepared

ROW = "__row"  # a row's number in the whole manifest (0-based)


def slice_path(scratch: Scratch, i: int) -> Any:
    return scratch.path("rows", f"s{i}.parquet")


def row_hashes(table: pa.Table) -> tuple[tuple[np.ndarray, np.ndarray], tuple]:
    """(key hashes, image key hashes) of a slice's rows: the image key is the `image_key`,
    else the key (the rule placement numbers images by)."""
    names, n = table.schema.names, table.num_rows
    keys = table.column("key").to_pylist() if "key" in names else [None] * n
    iks = keys
    if "image_key" in names:
        iks = list(map(stored_under, keys, table.column("image_key").to_pylist()))
    return value_hashes(keys), value_hashes(iks)


def _save_buckets(scratch: Scratch, stage: str, name: str, rows: np.ndarray, hi: np.ndarray):
    for b, part in enumerate(split_by_bucket(rows, scratch.bucket_of(hi), scratch.buckets)):
        if len(part):
            save_array(scratch.path(stage, f"b{b}", f"{name}.npy"), part)


def hash_slice(task: tuple) -> int:
    """Stage 1: a slice's rows by image key hash (row, hash) and by key hash (key, image key)."""
    scratch, i = task
    table = pq.read_table(slice_path(scratch, i))
    (k_hi, k_lo), (i_hi, i_lo) = row_hashes(table)
    ik = np.zeros(table.num_rows, dtype=IK)
    ik["row"] = i * scratch.slice_rows + np.arange(table.num_rows)
    ik["hi"], ik["lo"] = i_hi, i_lo
    _save_buckets(scratch, "ik", f"s{i}", ik, i_hi)
    pairs = np.zeros(table.num_rows, dtype=PAIR)
    pairs["hi"], pairs["lo"], pairs["ik_hi"], pairs["ik_lo"] = k_hi, k_lo, i_hi, i_lo
    _save_buckets(scratch, "key", f"s{i}", pairs, k_hi)
    return table.num_rows


def first_rows(ik: np.ndarray) -> np.ndarray:
    """Each distinct image key once, with its first row (IK rows, sorted by hash)."""
    s = ik[np.lexsort((ik["row"], ik["lo"], ik["hi"]))]
    first = np.ones(len(s), dtype=bool)
    first[1:] = (s["hi"][1:] != s["hi"][:-1]) | (s["lo"][1:] != s["lo"][:-1])
    return s[first]


def image_refs(scratch: Scratch, rows: np.ndarray) -> list[Any]:
    """The image ref of each row numbered `rows` (ascending), read from its slice: the raw
    (shard, key) a download stored beside it, else the row's `path`."""
    out: list[Any] = []
    slices = rows // scratch.slice_rows
    for i in np.unique(slices).tolist():
        f = pq.ParquetFile(slice_path(scratch, i))
        local = pa.array(rows[slices == i] - i * scratch.slice_rows)
        names = f.schema_arrow.names
        if REF_SHARD in names:
            part = f.read(columns=[REF, REF_SHARD]).take(local)
            out += refs_of(part.column(REF).to_pylist(), part.column(REF_SHARD).to_pylist())
        elif "path" in names:
            out += f.read(columns=["path"]).column("path").take(local).to_pylist()
        else:
            out += [None] * len(local)
    return out


RESULT = pa.schema(
    [("hi", pa.uint64()), ("lo", pa.uint64()), (REF, pa.string()), (REF_SHARD, pa.int32()),
     ("fmt", pa.string()), ("w", pa.int64()), ("h", pa.int64()), ("size", pa.int64()),
     ("sha", pa.string()), ("src", pa.string()), ("file", pa.string()), ("st0", pa.int64()),
     ("st1", pa.int64()), ("reason", pa.string()), ("detail", pa.string())]
)  # fmt: skip


def _result_values(r: Any) -> tuple:
    """A check result as RESULT's columns from "fmt" on."""
    if not isinstance(r, Prepared):
        return (None,) * 9 + (r.reason, r.detail)
    stamp = r.file_stamp or (None, None)
    info = (r.info.format, r.info.width, r.info.height)
    return (*info, r.size, r.sha256, r.source_sha256, r.file, *stamp, None, None)


def results_table(images: np.ndarray, refs: list, results: list) -> pa.Table:
    """Each image's check result by its image key hash and ref (RESULT rows)."""
    names, shards = ref_arrays(refs)
    columns = list(zip(*map(_result_values, results), strict=True))
    arrays = [pa.array(images["hi"]), pa.array(images["lo"]), names, shards]
    arrays += [
        pa.array(list(c), type=f.type) for c, f in zip(columns, list(RESULT)[4:], strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=RESULT)


def results_of(table: pa.Table) -> dict[Any, Any]:
    """ref -> Prepared or ImageProblem, from RESULT rows."""
    refs = refs_of(table.column(REF).to_pylist(), table.column(REF_SHARD).to_pylist())
    out: dict[Any, Any] = {}
    for ref, r in zip(refs, table.drop_columns([REF, REF_SHARD]).to_pylist(), strict=True):
        if r["reason"] is not None:
            out[ref] = ImageProblem(r["reason"], r["detail"])
            continue
        stamp = None if r["st0"] is None else (r["st0"], r["st1"])
        info = ImageInfo(r["fmt"], r["w"], r["h"])
        out[ref] = Prepared(info, r["size"], r["sha"], r["src"], r["file"], stamp)
    return out


def check_bucket(task: tuple) -> int:
    """Stage 2: the images of one image-key partition checked once, each from its first row
    (as placement checks them), in row order; the results kept for placement; each good
    image's source sha256 -> its image key, by sha partition."""
    scratch, j, source, opts = task
    images = first_rows(load_arrays(scratch.path("ik", f"b{j}"), IK))
    if not len(images):
        return 0
    images = images[np.argsort(images["row"], kind="stable")]  # raw shards read in order
    refs = image_refs(scratch, images["row"])
    results = [r for t in source.plan_tasks(refs, opts) for r in plan_task(t)]
    save_table(scratch.path("res", f"s{j}.parquet"), results_table(images, refs, results))
    ok = np.array([isinstance(r, Prepared) for r in results], dtype=bool)
    good = images[ok]
    pairs = np.zeros(len(good), dtype=PAIR)
    if len(good):
        shas = [r.source_sha256 for r in results if isinstance(r, Prepared)]
        pairs["hi"], pairs["lo"] = digest_hashes(shas)
    pairs["ik_hi"], pairs["ik_lo"] = good["hi"], good["lo"]
    _save_buckets(scratch, "sha", f"s{j}", pairs, pairs["hi"])
    return len(images)


def group_edges(pairs: np.ndarray) -> np.ndarray:
    """For each group (same hash) naming several image keys: an edge from its smallest image
    key to each other one (what makes them one component)."""
    if len(pairs) < 2:
        return np.empty(0, dtype=EDGE)
    cols = np.stack([pairs[f] for f in ("hi", "lo", "ik_hi", "ik_lo")], axis=1)
    u = np.unique(cols, axis=0)
    start = np.ones(len(u), dtype=bool)
    start[1:] = (u[1:, 0] != u[:-1, 0]) | (u[1:, 1] != u[:-1, 1])
    head = np.maximum.accumulate(np.where(start, np.arange(len(u)), 0))
    other = np.flatnonzero(~start)
    edges = np.zeros(len(other), dtype=EDGE)
    edges["a_hi"], edges["a_lo"] = u[head[other], 2], u[head[other], 3]
    edges["b_hi"], edges["b_lo"] = u[other, 2], u[other, 3]
    return edges


def edges_bucket(task: tuple) -> int:
    """Stage 3: image keys linked by a shared record key or by the same image bytes."""
    scratch, j = task
    by_key = group_edges(load_arrays(scratch.path("key", f"b{j}"), PAIR))
    by_sha = group_edges(load_arrays(scratch.path("sha", f"b{j}"), PAIR))
    edges = np.concatenate([by_key, by_sha])
    if len(edges):
        save_adjacency(scratch, j, edges)
    return len(edges)


def _save_parts(scratch: Scratch, stage: str, name: str, table: pa.Table, bucket) -> None:
    for c in np.unique(bucket).tolist():
        part = table.take(np.flatnonzero(bucket == c))
        save_table(scratch.path(stage, f"c{c}", f"{name}.parquet"), part)


def route_slice(task: tuple) -> int:
    """Stage 5: a slice's rows (with their row numbers) sent to their component's partition."""
    scratch, i = task
    table = pq.read_table(slice_path(scratch, i))
    rows = i * scratch.slice_rows + np.arange(table.num_rows, dtype=np.int64)
    table = table.append_column(ROW, pa.array(rows))
    dest = load_arrays(scratch.path("dest", f"s{i}"), DEST)
    bucket = dest["bucket"][np.argsort(dest["row"], kind="stable")]
    _save_parts(scratch, "comp", f"s{i}", table, bucket)
    return table.num_rows


def destinations(task: tuple) -> int:
    """Stage 5, once the components are known: an image-key partition's rows (by slice) and
    check results with their component's partition."""
    scratch, j = task
    row_destinations(scratch, j)
    return route_checks(scratch, j)


def route_checks(scratch: Scratch, j: int) -> int:
    """An image-key partition's check results sent to their component's partition."""
    path = scratch.path("res", f"s{j}.parquet")
    if not path.exists():
        return 0
    table = pq.read_table(path)
    hi, lo = table.column("hi").to_numpy(), table.column("lo").to_numpy()
    _save_parts(scratch, "chk", f"s{j}", table, component_buckets(scratch, j, hi, lo))
    return table.num_rows


def clash_bucket(task: tuple) -> tuple[int, int, str] | None:
    """Stage 7 (--every-text): the first copy key (by its sample's opening row, then copy)
    that is also a placed record key or an image key, in one hash partition; None: none."""
    scratch, j = task
    copies = load_tables(scratch.path("ck", f"b{j}"))
    if copies is None:
        return None
    taken = HashSet()
    for pieces in (load_arrays(scratch.path("pk", f"b{j}"), HASH),
                   load_arrays(scratch.path("ik", f"b{j}"), IK)):  # fmt: skip
        taken.add(pieces["hi"], pieces["lo"])
    hi, lo = (copies.column(c).to_numpy() for c in ("hi", "lo"))
    hit = np.flatnonzero(taken.contains(hi, lo))
    if not len(hit):
        return None
    found = zip(
        *(copies.column(c).take(hit).to_pylist() for c in ("open", "copy", "key")), strict=True
    )
    return min(found)
