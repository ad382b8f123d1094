"""The keys that depend on the data, checked against the source before anything runs.

The static checks say whether a key can be honoured at all; these say whether it can be on
*this* data: the provider path opens as a source, the market's instruments and the
benchmark codes have bars in it, and the segments and the backtest range hold trading days
of its calendar. A Qlib file pointed at other data (Qlib's cn_data examples on the bundled
S&P sample: market csi300, benchmark SH000300) then fails in seconds, naming each key,
instead of after training.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from alstm_pipeline.qlib_workflow.checks import Check
from alstm_pipeline.qlib_workflow.spec import SEGMENT_NAMES, BacktestSpec, HandlerSpec, resolve_instruments

NO_BENCHMARK = "benchmark: null"  # the one spelling of "no benchmark" in a workflow file
_SHOWN = 5


def _codes_text(codes) -> str:
    codes = sorted(codes)
    return ", ".join(codes[:_SHOWN]) + (f" … ({len(codes)} codes)" if len(codes) > _SHOWN else "")


def check_against_data(provider: Path, handler: HandlerSpec | None, segments: dict[str, tuple[str, str]],
                       backtest: BacktestSpec | None, check: Check) -> None:
    """Add a problem for every data-dependent key this source cannot honour (see module doc)."""
    from alstm_pipeline.sources import SourceDataError, Universe, open_source

    try:
        source = open_source(provider)
        calendar = pd.DatetimeIndex(source.calendar())
        stored = set(source.instruments())
    except (SourceDataError, OSError, ValueError) as error:
        check.add("qlib_init.provider_uri", f"{provider} cannot be read as market data: {error}")
        return
    if calendar.empty or not stored:
        check.add("qlib_init.provider_uri", f"{provider} holds no bars")
        return
    span = f"{calendar[0].date()}..{calendar[-1].date()}"

    if handler is not None and handler.instruments != "all":
        key = "task.dataset.kwargs.handler.kwargs.instruments"
        path = resolve_instruments(handler.instruments, provider)
        if path is not None and path.is_file():
            try:
                members = set(Universe.from_file(path).instruments)
            except (SourceDataError, OSError, ValueError) as error:
                check.add(key, f"market {handler.instruments!r}: {path} cannot be read: {error}")
                members = None
            if members is not None:
                absent = members - stored
                if members and absent == members:
                    check.add(key, f"market {handler.instruments!r}: none of its {len(members)} instruments "
                                   f"({_codes_text(members)}) has bars in {provider}")
                elif absent:
                    check.warn(key, f"market {handler.instruments!r}: {len(absent)} of its {len(members)} instruments have no "
                                    f"bars in {provider} and are left out ({_codes_text(absent)}), as Qlib leaves them out")

    for name in SEGMENT_NAMES:
        if name in segments:
            start, end = segments[name]
            _holds_trading_days(calendar, start, end, f"task.dataset.kwargs.segments.{name}", span, check)
    if handler is not None and handler.start_time and pd.Timestamp(handler.start_time) > calendar[-1]:
        check.add("task.dataset.kwargs.handler.kwargs.start_time", f"{handler.start_time} is after the data's last day ({span})")

    if backtest is not None:
        key = check.paths.get("backtest", "PortAnaRecord.kwargs.config.backtest")
        codes = (backtest.benchmark,) if isinstance(backtest.benchmark, str) else tuple(backtest.benchmark or ())
        missing = [code for code in codes if code and code not in stored]
        if missing:
            check.add(f"{key}.benchmark", f"{', '.join(missing)} has no bars in {provider}. Fix: an instrument code of the "
                                          f"source (an index such as ^GSPC), or {NO_BENCHMARK} for the equal-weight universe")
        test = segments.get("test", ("", ""))
        start, end = backtest.start_time or test[0], backtest.end_time or test[1]
        if start:
            _holds_trading_days(calendar, start, end, key, span, check)


def _holds_trading_days(calendar: pd.DatetimeIndex, start: str, end: str, key: str, span: str, check: Check) -> None:
    if not start:
        return  # a malformed date is reported by the static checks
    last = pd.Timestamp(end) if end else calendar[-1]
    inside = calendar[(calendar >= pd.Timestamp(start)) & (calendar <= last)]
    if inside.empty:
        check.add(key, f"{start}..{end or 'the last day'} holds no trading day of the data ({span})")
