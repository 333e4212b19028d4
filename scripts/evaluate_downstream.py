#!/usr/bin/env python
"""Deprecated entry point: the downstream grid is ``hf-hdcid evaluate`` with several models, tasks or
directions (e.g. ``hf-hdcid evaluate --models M1 M2 --data D --tasks synthetic_ave synthetic_avvp --toc both``);
this script passes its arguments to it unchanged."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if (REPO / "src" / "hf_hdcid").is_dir():
    try:
        import hf_hdcid  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO / "src"))

from hf_hdcid.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
