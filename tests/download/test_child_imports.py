"""img2dataset's processes start without torch (issue 23): ~600 MB resident in the child and
in every worker it spawns, for webdataset's optional PyTorch classes that img2dataset's writers
never use. A spawned worker runs the child's module again as `__mp_main__` (multiprocessing's
spawn start method, `spawn._fixup_main_from_name`) before its first task, so that is what
these tests run. The downloads in tests/shards/test_download.py run img2dataset this way."""

from __future__ import annotations

import os
import subprocess
import sys

CHECK = """
import runpy, sys
runpy.run_module("vlmdata.download.child", run_name=sys.argv[1])
import img2dataset.downloader, img2dataset.writer  # what a worker unpickles, what it writes with
from img2dataset.writer import WebDatasetSampleWriter, ParquetSampleWriter
print(sys.modules["torch"] is None, "webdataset" in sys.modules)
"""


def run_check(run_name: str) -> str:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    done = subprocess.run([sys.executable, "-c", CHECK, run_name], capture_output=True,
                          text=True, env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


def test_spawned_worker_imports_img2dataset_without_torch():
    assert run_check("__mp_main__") == ["True", "True"]
