"""Build the vendored golden slices in ``alstm_pipeline_tests/golden/`` from the complete
golden folder (``../shared/golden``), so the parity tests run on a fresh clone.

Rule (fixed, no randomness; see README.md beside this file):

* copied byte for byte: ``input.parquet`` (whole: the features are computed from it),
  ``alstm_forward.npz``, ``ts_windows.npz``, ``ic.parquet``, ``ic.json``, ``qlib_provider/``;
* ``alstm_processed.parquet``: every row and column, only re-encoded (zstd, byte-stream-split
  floats), values unchanged;
* ``alpha158.parquet``: every column, on every ``DATE_STEP``-th trading day of the golden
  calendar (positions 0, 10, 20, ...) plus its last day, all instruments of those days;
* ``alpha158_alstm.parquet`` (not in the complete folder): every row of ``alpha158.parquet``
  but only ``instrument, date``, the 20 ALSTM features and ``LABEL0``: the normaliser is
  fitted on every row of 2012-2014 and windows need their 20-day histories, so these
  columns are kept whole.

``alpha360/`` is vendored separately and is left alone here.

Usage (from the repository root):
    python alstm_pipeline_tests/golden/build_vendored.py [../shared/golden]
Byte-identical output for the same pyarrow version.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
DATE_STEP = 10
COPIED = ["input.parquet", "alstm_forward.npz", "ts_windows.npz", "ic.parquet", "ic.json"]


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """zstd; floats byte-stream-split and never dictionary-encoded (a dictionary of
    float32 values makes the file larger than the raw values)."""
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    floats = [field.name for field in table.schema if pa.types.is_floating(field.type)]
    strings = [field.name for field in table.schema if pa.types.is_string(field.type)]
    pq.write_table(
        table, path, compression="zstd", compression_level=19,
        use_dictionary=strings, use_byte_stream_split=floats,
    )


def kept_dates(dates: pd.Series) -> np.ndarray:
    """Every DATE_STEP-th trading day of the golden calendar, and its last day."""
    calendar = np.sort(dates.unique())
    return np.union1d(calendar[::DATE_STEP], calendar[-1:])


def build(source: Path, target: Path) -> None:
    for name in COPIED:
        shutil.copyfile(source / name, target / name)
    if (target / "qlib_provider").exists():
        shutil.rmtree(target / "qlib_provider")
    shutil.copytree(source / "qlib_provider", target / "qlib_provider")

    processed = pd.read_parquet(source / "alstm_processed.parquet")
    write_parquet(processed, target / "alstm_processed.parquet")

    alpha158 = pd.read_parquet(source / "alpha158.parquet")
    write_parquet(alpha158[alpha158["date"].isin(kept_dates(alpha158["date"]))], target / "alpha158.parquet")
    # Qlib's own list of the 20 (the processed frame's feature columns), in Alpha158 order.
    alstm = [c for c in processed.columns if c not in ("instrument", "date", "LABEL0_learn", "LABEL0_raw")]
    assert len(alstm) == 20
    write_parquet(alpha158[["instrument", "date", *alstm, "LABEL0"]], target / "alpha158_alstm.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=HERE.parents[1].parent / "shared" / "golden")
    parser.add_argument("target", nargs="?", type=Path, default=HERE)
    args = parser.parse_args()
    build(args.source, args.target)


if __name__ == "__main__":
    main()
