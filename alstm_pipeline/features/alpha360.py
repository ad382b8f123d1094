"""Qlib's Alpha360 features: the last 60 days of each price and the volume, as ratios.

Same row conventions as :func:`compute_alpha158` (semantics doc §1.1: calendar-aligned
series, one row per calendar day of an instrument's span, ``first_dates``/``last_dates``
so a lookback slice reproduces the full-history rows). ``Ref`` is a shift on that calendar
(§2.1), so a suspended day is a NaN lag, not skipped.

Expressions (Qlib's ``Alpha360DL``), lag k = 59 .. 0 within each of the six groups:

- ``CLOSE{k} = Ref($close, k) / $close`` (``CLOSE0 = $close/$close``), likewise OPEN, HIGH,
  LOW and VWAP (``Ref($vwap, k) / $close``);
- ``VOLUME{k} = Ref($volume, k) / ($volume + 1e-12)``.

All arithmetic is float32 (§1.5: element-wise ops on float32 fields with Python scalars stay
float32; there is no rolling operator, so nothing goes through float64). The golden README
(alpha360) records that plain float32 arithmetic reproduces Qlib bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from alstm_pipeline.features.panel import to_dense_panel

ALPHA360_LAGS = 60
# Qlib's group order; each group is normalised by the day's close except VOLUME.
ALPHA360_GROUPS: tuple[str, ...] = ("CLOSE", "OPEN", "HIGH", "LOW", "VWAP", "VOLUME")
ALPHA360_NAMES: tuple[str, ...] = tuple(
    f"{group}{lag}" for group in ALPHA360_GROUPS for lag in range(ALPHA360_LAGS - 1, -1, -1)
)
# Calendar rows before day D (exclusive) that day D's Alpha360 row reads: Ref(x, 59).
ALPHA360_LOOKBACK_ROWS = ALPHA360_LAGS - 1

REQUIRED_FIELDS = ("open", "high", "low", "close", "volume")

# Instruments per block: a block array of about this many cells stays in cache (as alpha158.py).
_BLOCK_CELLS = 1 << 17


def compute_alpha360(
    fields: pd.DataFrame,
    last_dates: Mapping[str, pd.Timestamp] | None = None,
    first_dates: Mapping[str, pd.Timestamp] | None = None,
) -> pd.DataFrame:
    """Alpha360 for every instrument and calendar day of the input.

    ``fields``: long frame ``instrument, date, open, high, low, close, volume`` (+ optional
    ``vwap``; ``factor`` is accepted and unused) of Qlib-adjusted values (§1.2). Returns
    ``instrument, date`` + the 360 float32 columns of :data:`ALPHA360_NAMES`, rows and order
    exactly as :func:`compute_alpha158` (sorted by instrument, date). Without a ``vwap``
    column the 60 VWAP columns are NaN, as in Qlib without a ``$vwap`` field (§1.3).

    A day's row reads its own bar and the :data:`ALPHA360_LOOKBACK_ROWS` calendar rows before
    it; with ``last_dates``/``first_dates`` a slice of that many extra rows reproduces the
    full-history row bit for bit.
    """
    panel = to_dense_panel(fields, REQUIRED_FIELDS, ("vwap",), first_dates, last_dates)
    n_inst, n_cal = len(panel.instruments), len(panel.calendar)
    columns = np.empty((len(ALPHA360_NAMES), panel.n_rows), dtype=np.float32)
    pad = ALPHA360_LOOKBACK_ROWS
    per_block = max(1, _BLOCK_CELLS // max(n_cal, 1))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for start in range(0, n_inst, per_block):
            stop = min(start + per_block, n_inst)
            writer = panel.block_writer(start, stop)
            close = panel.values["close"][start:stop]
            # float32 + Python scalar stays float32 (§1.5): the 1e-12 only matters on a
            # zero-volume day, and VOLUME0 is exactly 1 on every other day with a bar.
            volume_denominator = panel.values["volume"][start:stop] + np.float32(1e-12)
            quotient = np.empty((stop - start, n_cal), dtype=np.float32)
            position = 0
            for group in ALPHA360_GROUPS:
                source = _group_source(panel.values, group, start, stop, close)
                denominator = volume_denominator if group == "VOLUME" else close
                # Left-pad with NaN so Ref(x, k) is a slice: before the panel there is no value.
                padded = np.full((stop - start, pad + n_cal), np.nan, dtype=np.float32)
                padded[:, pad:] = source
                for lag in range(ALPHA360_LAGS - 1, -1, -1):
                    np.divide(padded[:, pad - lag : pad - lag + n_cal], denominator, out=quotient)
                    writer.write(quotient, columns[position])
                    position += 1
    frame = pd.DataFrame(columns.T, columns=list(ALPHA360_NAMES), copy=False)
    index = panel.long_index()
    frame.insert(0, "date", index["date"].to_numpy())
    frame.insert(0, "instrument", index["instrument"].to_numpy())
    return frame


def _group_source(
    values: dict[str, np.ndarray], group: str, start: int, stop: int, close: np.ndarray
) -> np.ndarray:
    name = group.lower()
    if name in values:
        return values[name][start:stop]
    # Only vwap is optional (§1.3): Qlib yields NaN for every Ref($vwap, k)/$close.
    return np.full_like(close, np.nan)
