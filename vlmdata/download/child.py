"""The img2dataset child process: `python -m vlmdata.download.child CONFIG.json`.

Module-level code here runs in img2dataset's process and again in every worker it spawns
(multiprocessing's spawn start method re-imports the main module as `__mp_main__`), which is
the one place to install the private-redirect guard for all of them. Kept apart from
`download_img2dataset` so that importing the library never changes urllib's global opener.
"""

from __future__ import annotations

import json
import os
import sys

from vlmdata.download.redirects import ALLOW_PRIVATE_ENV, install

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no update check over the network
if os.environ.get(ALLOW_PRIVATE_ENV) != "1":
    install()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m vlmdata.download.child CONFIG.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        kwargs = json.load(f)
    from img2dataset import download

    download(**kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
