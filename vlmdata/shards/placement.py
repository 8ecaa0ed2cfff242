"""The planned writer's placement in compact state (issue 23): group.py's rules, exactly, with
hashes and numbers in numpy arrays or temp files instead of a dict entry or an object per row.

Pass 1 (`number_images`) numbers the image keys in order of first appearance (a 128-bit hash
of each key -> its number) and notes each row's image and each image's first and last row,
in temp files (`Images`). Pass 2 (`Placer`) reads the rows WINDOW at a time: the images first
named in the window are checked on the engine, then its rows are placed in order. The placed
keys are a HashSet, "image key -> its sample" an int32 array over image numbers, "source
sha256 -> sample" a HashMap, both with their runs past DISK_PAST on disk; a row needing
something decided earlier in its own window finds it in a per-window dict. A sample is a row
of `Samples` (the opening row and source hash: HOT; the checked image's facts: COLD), both
DiskRows files; a window reads the HOT rows of the samples its rows' images already have in
one pass. Which sample each row joined is an int32 per row, from which sealing.py makes every
KEY.json afterwards. In memory per row: those two int32s (8 bytes), whatever the rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from vlmdata.core.keyset import DISK_PAST, HashMap, HashSet
from vlmdata.core.manifest import duplicate_image_rule
from vlmdata.core.record import Record
from vlmdata.shards.compact import DiskRows, Growing, digest_hashes, index_dtype, value_hashes
from vlmdata.shards.group import Gate, record_problem, source_of
from vlmdata.shards.image_sources import plan_task
from vlmdata.shards.images import ImageInfo
from vlmdata.shards.planrows import ListRows, ManifestRecords, Placing, image_ref
from vlmdata.shards.prepare import ImageProblem, Prepared
from vlmdata.shards.spill import Spill

Rows = ManifestRecords | ListRows


SPAN = np.dtype([("first", "<i8"), ("last", "<i8")])  # an image's first and last row


@dataclass
class Images:
    """Pass 1: each row's image number and each image's first and last row, in temp files
    read back a window (or a few images) at a time, and (for --every-text, whose copy keys
    must not repeat one) the image keys' hashes."""

    of_rows: DiskRows  # int64 per row: its image number
    spans: DiskRows  # SPAN per image
    keys: HashMap | None

    def __len__(self) -> int:
        return len(self.spans)

    @property
    def rows(self) -> int:
        return len(self.of_rows)

    def of(self, start: int, end: int) -> np.ndarray:
        """The image numbers of rows start..end-1."""
        return self.of_rows.read_range(start, end)

    def first_rows(self, images: np.ndarray) -> np.ndarray:
        return self.spans.read(np.asarray(images, dtype=np.int64))["first"]

    def last_rows(self, images: np.ndarray) -> np.ndarray:
        return self.spans.read(np.asarray(images, dtype=np.int64))["last"]

    def placed(self) -> None:
        """Drop what only placement reads (each row's image)."""
        self.of_rows.close()


def number_images(rows: Rows, keep_keys: bool) -> Images:
    """Number every distinct image key (by its hash) in order of first appearance."""
    index, count, start = HashMap(disk_past=DISK_PAST), 0, 0
    of_rows = DiskRows(np.dtype("<i8"))
    first, last = Growing("<i8"), Growing("<i8")
    for keys in rows.image_key_batches():
        hi, lo = value_hashes(keys)
        nums = index.get(hi, lo)
        new = np.flatnonzero(nums < 0)
        if len(new):
            pairs = np.stack((hi[new], lo[new]), axis=1)
            uniq, first_at, inverse = np.unique(
                pairs, axis=0, return_index=True, return_inverse=True
            )
            rank = np.empty(len(first_at), dtype=np.int64)  # numbers in order of appearance
            rank[np.argsort(first_at, kind="stable")] = np.arange(len(first_at)) + count
            nums[new] = rank[inverse.reshape(-1)]
            index.add(np.ascontiguousarray(uniq[:, 0]), np.ascontiguousarray(uniq[:, 1]), rank)
            first.extend(start + new[np.sort(first_at)])
            last.extend(np.full(len(first_at), -1, dtype=np.int64))
            count += len(first_at)
        np.maximum.at(last.array, nums, np.arange(start, start + len(keys), dtype=np.int64))
        of_rows.extend(nums)
        start += len(keys)
    spans = DiskRows(SPAN)
    for a in range(0, count, 1 << 16):
        block = np.zeros(min(1 << 16, count - a), dtype=SPAN)
        block["first"], block["last"] = (
            first.array[a : a + len(block)],
            last.array[a : a + len(block)],
        )
        spans.extend(block)
    if not keep_keys:
        index.close()
    return Images(of_rows, spans, index if keep_keys else None)


HOT = np.dtype(
    [
        ("row", "<i8"),  # the row that opened it (its first record)
        ("src", "<u8", (2,)),  # hash of the first record's file or URL (rule 2)
        ("split", "<i4"),  # into Samples.splits
    ]
)
COLD = np.dtype(  # read back a window at a time, after placement: on disk
    [
        ("image", "<i8"),  # its image number (the image's first row has the ref)
        ("fmt", "u1"),  # into Samples.formats
        ("width", "<i4"),
        ("height", "<i4"),
        ("size", "<i8"),
        ("sha", "u1", (32,)),  # sha256 of the stored bytes
        ("file_at", "<i8"),  # the checked file's path in the spill file (-1 size: none)
        ("file_n", "<i4"),
        ("stamp", "<i8", (2,)),  # its (size, mtime_ns); -1: none
    ]
)


class Samples:
    """The image samples in opening order: what placement looks up (HOT) and the checked
    image's facts (COLD), each in a DiskRows file."""

    def __init__(self, spill: Spill) -> None:
        self.hot = DiskRows(HOT)
        self.cold = DiskRows(COLD)
        self.splits: dict[Any, int] = {}  # split value -> code, in first-seen order
        self.formats: dict[str, int] = {}
        self._spill = spill

    def __len__(self) -> int:
        return len(self.hot)

    def open(self, row: int, image: int, record: Record, p: Prepared, src: tuple) -> int:
        split = self.splits.setdefault(record.split, len(self.splits))
        fmt = self.formats.setdefault(p.info.format, len(self.formats))
        at, n = -1, -1
        if p.file is not None:
            data = p.file.encode("utf-8", "surrogateescape")
            at, n = self._spill.put_raw(data), len(data)
        stamp = p.file_stamp if p.file_stamp is not None else (-1, -1)
        sha = np.frombuffer(bytes.fromhex(p.sha256), dtype=np.uint8)
        self.cold.append((image, fmt, p.info.width, p.info.height, p.size, sha, at, n, stamp))
        return self.hot.append((row, src, split))

    def prepared(self, cold: np.ndarray, with_file: bool = True) -> list[Any]:
        """COLD rows as the checked images: Prepared (no source hash) for the writing task
        (`with_file`), else the facts the layout reads (Facts: info, size, sha256)."""
        names = {c: f for f, c in self.formats.items()}
        shas = cold["sha"].tobytes()
        columns = (cold[f].tolist() for f in ("fmt", "width", "height", "size"))
        if not with_file:
            return [Facts(Info(names[fmt], w, h), size, shas[32 * i : 32 * i + 32].hex())
                    for i, (fmt, w, h, size) in enumerate(zip(*columns, strict=True))]  # fmt: skip
        out = []
        spans = zip(cold["file_at"].tolist(), cold["file_n"].tolist(), strict=True)
        stamps = cold["stamp"].tolist()
        facts = zip(*columns, strict=True)
        for i, ((fmt, w, h, size), (at, n)) in enumerate(zip(facts, spans, strict=True)):
            file = self._spill.get_raw(at, n).decode("utf-8", "surrogateescape") if n >= 0 else None
            stamp = None if stamps[i][0] < 0 else tuple(stamps[i])
            info = ImageInfo(names[fmt], w, h)
            out.append(Prepared(info, size, shas[32 * i : 32 * i + 32].hex(), "", file, stamp))
        return out

    def split_of(self, code: int) -> Any:
        return _name_of(self.splits, code)


class Info(NamedTuple):
    """ImageInfo's fields, made cheaply (the layout reads them once per sample)."""

    format: str
    width: int
    height: int


class Facts(NamedTuple):
    """What the layout reads of a checked image (Prepared's fields of the same names)."""

    info: Info
    size: int
    sha256: str


def _name_of(codes: dict, code: int) -> Any:
    for value, c in codes.items():  # few values (splits, formats)
        if c == code:
            return value
    raise KeyError(code)


class Placer:
    """Pass 2: every row placed (group.py's rules, in row order), WINDOW rows at a time."""

    WINDOW = 32768  # rows whose new images are checked in one engine call
    PENDING = 65536  # check results kept for images not stored yet (beyond: checked again)

    def __init__(self, rows: Rows, refs: Any, source: Any, images: Images, run: Any):
        self.rows, self.refs, self.source, self.images = rows, refs, source, images
        self.gate: Gate = run.gate
        self.opts, self.engine = run.opt.image, run.engine
        self.samples = Samples(run.spill)
        self.keys = HashSet(disk_past=DISK_PAST)  # record keys placed
        self.by_hash = HashMap(disk_past=DISK_PAST)  # source sha256 -> sample
        numbers = index_dtype(images.rows)  # samples are fewer than rows
        self.sample_of_image = np.full(len(images), -1, dtype=numbers)
        self.sample_of_row = np.full(images.rows, -1, dtype=numbers)
        self.pending: dict[int, tuple[Any, int]] = {}  # image -> (its check, last row), unstored
        self._seen = -1  # the highest image number so far (numbered as first named)

    def run(self, progress) -> None:
        start = 0
        for window in self._windows():
            self._place_window(start, window)
            start += len(window)
            progress.update(len(window))

    def finish(self, keep_keys: bool) -> None:
        """Drop what only placement reads (the record keys too unless `keep_keys`)."""
        self.by_hash.close()
        self.sample_of_image = np.empty(0, dtype=self.sample_of_image.dtype)
        self.pending = {}
        if not keep_keys:
            self.keys.close()

    def _windows(self) -> Iterator[list[Placing]]:
        window: list[Placing] = []
        for batch in self.rows.batches():
            window += batch
            if len(window) >= self.WINDOW:
                yield window
                window = []
        if window:
            yield window

    def _ref(self, row: int, record: Record) -> Any:
        return image_ref(self.refs, row, record)

    def _check(self, refs: list[Any]) -> list[Any]:
        results: list[Any] = []
        for chunk in self.engine.map(plan_task, self.source.plan_tasks(refs, self.opts)):
            results += chunk
        return results

    def _place_window(self, start: int, window: list[Placing]) -> None:
        n = len(window)
        nums = self.images.of(start, start + n)
        before = np.maximum.accumulate(np.concatenate(([self._seen], nums)))
        new = np.flatnonzero(nums > before[:-1])  # the rows that name an image first
        self._seen = int(before[-1])
        refs = [self._ref(start + i, window[i][0]) for i in new.tolist()]
        checked = dict(zip(nums[new].tolist(), self._check(refs), strict=True))
        records = [r for r, _ in window]
        key_hi, key_lo = value_hashes([r.key for r in records])
        taken_before = self.keys.contains(key_hi, key_lo)
        src_hi, src_lo = value_hashes([source_of(r) for r in records])
        earlier = self._earlier_hashes(checked.values())
        opened = np.zeros(n, dtype=HOT)  # HOT of the samples the window opens, from `first`
        hot = (*self._earlier_hot(nums), opened, len(self.samples))
        w = _Window(checked, set(), {}, taken_before, earlier, hot)
        for i, (record, columns) in enumerate(window):
            self._admit(start + i, i, record, columns, int(nums[i]), (src_hi[i], src_lo[i]), w)
        placed = self.sample_of_row[start : start + n] >= 0
        self.keys.add(key_hi[placed], key_lo[placed])
        if w.hashes:
            hi, lo = digest_hashes(list(w.hashes))
            self.by_hash.add(hi, lo, np.fromiter(w.hashes.values(), dtype=np.int64))
        last = dict(zip(nums[new].tolist(), self.images.last_rows(nums[new]).tolist(), strict=True))
        self._keep_pending(checked, last, start + n)

    def _earlier_hot(self, nums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The samples opened before this window that its rows' images already have (rule 2
        compares with them), sorted, and their HOT rows, read in one pass."""
        s = self.sample_of_image[nums]
        which = np.unique(s[s >= 0]).astype(np.int64)
        return which, self.samples.hot.read(which)

    def _hot(self, s: int, w: _Window) -> tuple[int, int, int]:
        """Sample s's (opening row, source hash hi, lo)."""
        which, earlier, opened, first = w.hot
        if s >= first:
            h = opened[s - first]
        else:
            k = int(np.searchsorted(which, s))
            if k < len(which) and which[k] == s:
                h = earlier[k]
            else:  # a sample found by its image's hash (rules 3-4): read alone
                (h,) = self.samples.hot.read(np.array([s], dtype=np.int64))
        return int(h["row"]), int(h["src"][0]), int(h["src"][1])

    def _earlier_hashes(self, results: Iterable[Any]) -> dict[str, int]:
        """Samples opened before this window, by the source sha256 of the images it may need
        (`results`, and the pending ones)."""
        shas = {r.source_sha256 for r in results if isinstance(r, Prepared)}
        shas |= {r.source_sha256 for r, _ in self.pending.values() if isinstance(r, Prepared)}
        if not shas or not len(self.by_hash):
            return {}
        shas_list = list(shas)
        found = self.by_hash.get(*digest_hashes(shas_list))
        return {h: int(s) for h, s in zip(shas_list, found.tolist(), strict=True) if s >= 0}

    def _keep_pending(self, checked: dict, last: dict[int, int], end: int) -> None:
        """Check results of images not stored yet that later rows still name."""
        stored = self.sample_of_image
        kept = {k: v for k, v in self.pending.items() if v[1] >= end and stored[k] < 0}
        kept.update((k, (v, last[k])) for k, v in checked.items()
                    if last[k] >= end and stored[k] < 0)  # fmt: skip
        while len(kept) > self.PENDING:  # oldest first: checked again if named again
            del kept[next(iter(kept))]
        self.pending = kept

    def _result(self, num: int, w: _Window) -> Any:
        """Image `num`'s check result: made in this window, kept, or made again now."""
        got = w.checked.get(num)
        if got is None and num in self.pending:
            got = self.pending[num][0]
        if got is None:  # named again after its check was let go: check it again
            row = int(self.images.first_rows(np.array([num]))[0])
            (record, _), = self.rows.take(np.array([row]))  # fmt: skip
            (got,) = self.source.plan([self._ref(row, record)], self.opts)
            if isinstance(got, Prepared) and got.source_sha256 not in w.earlier:
                w.earlier.update(self._earlier_hashes([got]))
        return got

    def _admit(self, row: int, i: int, record: Record, columns, num: int, src, w) -> None:
        """Place row `row` (the window's i-th, image number `num`, source hash `src`)."""
        if not isinstance(record, Record):
            raise TypeError(f"line {row + 1}: the gate places Records, not {type(record).__name__}")
        ik = record.stored_under
        taken = lambda key: bool(w.taken_before[i]) or key in w.keys  # noqa: E731
        placed = record_problem(record, ik, taken) or self._place(record, ik, num, src, w)
        if isinstance(placed, tuple) and isinstance(placed[0], str):
            self.gate.reject(record, columns, row + 1, *placed)
            return
        w.keys.add(record.key)
        if placed is not None:  # joins sample `s`
            s, key = placed
            self.sample_of_row[row] = s
            self.gate.records.place(record, key)
            return
        result = self._result(num, w)
        src_pair = (int(src[0]), int(src[1]))
        s = self.samples.open(row, num, record, result, src_pair)
        w.hot[2][s - w.hot[3]] = (row, src_pair, 0)
        self.sample_of_image[num] = s
        self.sample_of_row[row] = s
        w.hashes[result.source_sha256] = s
        self.gate.opened += 1
        self.gate.records.place(record, ik)

    def _place(self, record: Record, ik: Any, num: int, src, w) -> tuple | None:
        """Rules 2-4: (sample, its key) the record joins, a Problem, or None (rule 5)."""
        s = int(self.sample_of_image[num])
        if s >= 0:
            _, theirs_hi, theirs_lo = self._hot(s, w)
            if theirs_hi == int(src[0]) and theirs_lo == int(src[1]):
                return s, ik
            first = self._first_record(s, w)
            return ("image_key_conflict", f"image_key {ik!r} is already "
                    f"{source_of(first)!r}, not {source_of(record)!r}")  # fmt: skip
        result = self._result(num, w)
        if isinstance(result, ImageProblem):
            return result.reason, result.detail
        other = w.earlier.get(result.source_sha256, w.hashes.get(result.source_sha256, -1))
        if other < 0:
            return None
        other_key = self._first_record(other, w).stored_under
        if duplicate_image_rule(record.source, self.gate.rule) == "share":
            return other, other_key
        return "duplicate_image", f"same bytes as key {other_key!r}"

    def _first_record(self, s: int, w: _Window) -> Record:
        row = self._hot(s, w)[0]
        return self.rows.take(np.array([row]))[0][0]


@dataclass
class _Window:
    """What the rows of one window decided so far (the earlier windows' is in arrays)."""

    checked: dict[int, Any]  # image number -> check result, for images new in the window
    keys: set[str]  # record keys placed in the window
    hashes: dict[str, int]  # source sha256 -> sample, for samples opened in the window
    taken_before: np.ndarray  # per row: its key was placed in an earlier window
    earlier: dict[str, int]  # source sha256 -> sample opened before the window
    hot: tuple  # HOT rows: earlier samples (sorted numbers, rows), the window's own, its first
