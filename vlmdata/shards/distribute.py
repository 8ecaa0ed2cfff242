"""Running the shard tasks (image checks, then one task per output shard) on an engine.

"multiprocessing": a local process pool (`workers` processes; none for 1). "pyspark": the active
SparkSession, else the cluster of `spark-submit` when it launched us, else a local one with
`workers` cores (as img2dataset's pyspark distributor does). "ray": the running Ray
cluster (`RAY_ADDRESS`), else a local one with `workers` CPUs. The engine schedules, retries
and reports; results come back in task order, so the output does not depend on the engine.

Tasks are module-level functions with small, plain arguments (paths, plans, options): Spark and
Ray ship them with their own serialisers. No data files are ever pickled.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from vlmdata.core.errors import DataError
from vlmdata.core.lifetime import die_with_parent

T = TypeVar("T")
R = TypeVar("R")


def check_distributor(distributor: str) -> None:
    """Refuse an engine that is not installed, before any work starts."""
    if distributor != "multiprocessing" and importlib.util.find_spec(distributor) is None:
        raise DataError(
            f"--distributor {distributor} needs the {distributor} package, which is not "
            f"installed (pip install {distributor}); or use --distributor multiprocessing"
        )


class Engine:
    """Ordered `map` over tasks on one engine; `close()` stops only what it started itself."""

    def __init__(self, distributor: str, workers: int) -> None:
        check_distributor(distributor)
        self.distributor, self.workers = distributor, workers
        self._pool: ProcessPoolExecutor | None = None
        self._started: Any = None

    @property
    def in_process(self) -> bool:
        """Tasks run in this process, one after another."""
        return self.distributor == "multiprocessing" and self.workers <= 1

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        items = list(items)
        if not items:
            return iter(())
        if self.distributor == "pyspark":
            return iter(self._spark_map(fn, items))
        if self.distributor == "ray":
            return iter(self._ray_map(fn, items))
        if self.workers <= 1:
            return map(fn, items)
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=ctx,
                initializer=die_with_parent,  # a kill -9 of this process takes the pool along
                initargs=(os.getpid(),),
            )
        return self._pool.map(fn, items)

    def _spark_map(self, fn, items: list) -> list:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        if spark is None:
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            builder = SparkSession.builder.appName("vlmdata")
            if "PYSPARK_GATEWAY_PORT" not in os.environ:  # not under spark-submit: local
                builder = builder.master(f"local[{self.workers}]")
            spark = self._started = builder.getOrCreate()
        # one partition per task: Spark schedules (and retries) each on its own
        return spark.sparkContext.parallelize(items, len(items)).map(fn).collect()

    def _ray_map(self, fn, items: list) -> list:
        import ray

        if not ray.is_initialized():
            if os.environ.get("RAY_ADDRESS"):
                ray.init()
            else:
                ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False)
            self._started = ray
        task = ray.remote(fn)
        return ray.get([task.remote(x) for x in items])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        if self._started is not None:
            if self.distributor == "pyspark":
                self._started.stop()
            else:
                self._started.shutdown()
            self._started = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
