"""Rebuild this vendored slice of Qlib's Alpha360 golden files from the shared folder.

Usage (from the repository root): ``python alstm_pipeline_tests/golden/alpha360/rebuild.py [SHARED_DIR]``
(default ``../shared``). Rule (see README.md): keep every 4th date of the golden files'
dates (their ``days[::10]`` → ``days[::40]``) with every instrument; the forward npz is
copied unchanged; ``input.parquet`` is not copied (byte-identical to ``../input.parquet``).
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
DATE_STEP = 4
PARQUET_FILES = ("alpha360.parquet", "alstm360_processed.parquet")


def main() -> None:
    shared = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2].parent / "shared"
    source = shared / "golden" / "alpha360"
    digests = {p: hashlib.sha256((d / "input.parquet").read_bytes()).hexdigest() for p, d in
               (("alpha360", source), ("alpha158", shared / "golden"))}
    if digests["alpha360"] != digests["alpha158"]:
        raise SystemExit("alpha360/input.parquet differs from golden/input.parquet: vendor it too")
    dates = sorted(pd.read_parquet(source / "alpha360.parquet", columns=["date"])["date"].unique())
    keep = set(dates[::DATE_STEP])
    for name in PARQUET_FILES:
        frame = pd.read_parquet(source / name)
        subset = frame[frame["date"].isin(keep)].reset_index(drop=True)
        subset.to_parquet(HERE / name, index=False, compression="zstd", compression_level=19)
        print(f"{name}: {len(subset)} of {len(frame)} rows, {(HERE / name).stat().st_size:,} bytes")
    shutil.copyfile(source / "alstm360_forward.npz", HERE / "alstm360_forward.npz")
    print(f"alstm360_forward.npz: copied, {(HERE / 'alstm360_forward.npz').stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
