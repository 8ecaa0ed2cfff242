"""The img2dataset child process: `python -m vlmdata.download.child CONFIG.json`.

CONFIG.json holds `img2dataset` (its keyword arguments), `policy` (a FetchPolicy: what its
workers may fetch) and `parent_pid`. Before img2dataset starts, the child
- makes every Downloader img2dataset builds a GuardedDownloader (guard.py), which installs the
  fetch guard in whichever worker process runs it, under any distributor;
- leaves torch out (below);
- watches its parent: when the `vlmdata download` that started it is gone (even by kill -9),
  it kills its own process group, which holds img2dataset's workers, so nothing outlives the
  command and a rerun never races an orphan over OUT/.download/raw.
Kept apart from img2dataset_run so that importing the library never changes urllib's state.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no update check over the network
# img2dataset imports torch only through webdataset's optional PyTorch classes, which its
# writers never use: ~600 MB resident in this process and in each worker it spawns (a spawned
# worker runs this module again, as __mp_main__, before its first task). None in sys.modules
# makes that import fail as a missing torch does, which webdataset allows (issue 23).
sys.modules.setdefault("torch", None)  # type: ignore[arg-type]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m vlmdata.download.child CONFIG.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        config = json.load(f)
    from vlmdata.core.lifetime import kill_group_with_parent
    from vlmdata.download.guard import FetchPolicy, guard_img2dataset

    kill_group_with_parent(int(config["parent_pid"]))
    policy = config["policy"]
    guard_img2dataset(FetchPolicy(**{**policy, "denylist": tuple(policy["denylist"])}))
    from img2dataset import download

    download(**config["img2dataset"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
