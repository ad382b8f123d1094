"""The records of a workflow: SignalRecord, SigAnaRecord and the PortAnaRecord's backtest.

Settings are read where Qlib reads them: the backtest from the PortAnaRecord's
``kwargs.config`` (the top-level ``port_analysis_config`` is only an anchor holder); a file
without a PortAnaRecord has no backtest.
"""

from __future__ import annotations

from typing import Any

from alstm_pipeline.qlib_workflow.checks import Check
from alstm_pipeline.qlib_workflow.spec import (
    BACKTEST_DEFAULTS,
    EXCHANGE_DEFAULTS,
    RECORD_MODULES,
    REGION_DEFAULTS,
    STRATEGY_MODULES,
    BacktestSpec,
)


def records_spec(records: Any, region: str, check: Check):
    key = "task.record"
    if records is None:
        return (), None, False
    if isinstance(records, dict):  # Qlib accepts one record given as a mapping
        records = [records]
    if not isinstance(records, list):
        check.add(key, f"expected a list of records, got {records!r}")
        return (), None, False
    names, backtest, long_short = [], None, False
    for i, record in enumerate(records):
        rkey = f"{key}.{i}"
        record = check.mapping(record, rkey)
        check.unknown(record, rkey, {"class", "module_path", "kwargs"})
        cls = record.get("class")
        if record.get("module_path") not in RECORD_MODULES:
            check.add(f"{rkey}.module_path", f"{record['module_path']!r}: only Qlib's record_temp records")
        kwargs = check.mapping(record.get("kwargs"), f"{rkey}.kwargs")
        if cls == "SignalRecord":
            check.unknown(kwargs, f"{rkey}.kwargs", {"model", "dataset"})
        elif cls == "SigAnaRecord":
            check.unknown(kwargs, f"{rkey}.kwargs", {"model", "dataset", "ana_long_short", "ann_scaler", "label_col"})
            if kwargs.get("ana_long_short", False):
                check.add(f"{rkey}.kwargs.ana_long_short", "the long-short analysis is not implemented (§8); set False")
            if kwargs.get("label_col", 0) != 0:
                check.add(f"{rkey}.kwargs.label_col", "there is one label column")
            # ann_scaler only scales the long-short figures, which are off.
        elif cls == "PortAnaRecord":
            check.unknown(kwargs, f"{rkey}.kwargs", {"config", "model", "dataset", "risk_analysis_freq", "indicator_analysis_freq"})
            for name in ("risk_analysis_freq", "indicator_analysis_freq"):
                if name in kwargs and kwargs[name] not in ("day", "1day", ["day"], ["1day"]):
                    check.add(f"{rkey}.kwargs.{name}", f"{kwargs[name]!r}: daily only")
            if backtest is not None:
                check.add(rkey, "a second PortAnaRecord: one backtest per workflow")
            else:
                backtest = _backtest_spec(check.mapping(kwargs.get("config"), f"{rkey}.kwargs.config"), f"{rkey}.kwargs.config", region, check)
                check.paths["backtest"] = f"{rkey}.kwargs.config.backtest"
        else:
            check.add(f"{rkey}.class", f"{cls!r}: records are SignalRecord, SigAnaRecord and PortAnaRecord")
        names.append(str(cls))
    return tuple(names), backtest, long_short


def _backtest_spec(config: dict, key: str, region: str, check: Check) -> BacktestSpec | None:
    if not config:
        check.add(key, "missing: PortAnaRecord without a config uses Qlib's built-in one; write it out")
        return None
    check.unknown(config, key, {"strategy", "backtest", "executor"})
    executor = config.get("executor")
    if executor is not None:
        ex = check.mapping(executor, f"{key}.executor")
        ex_kwargs = check.mapping(ex.get("kwargs"), f"{key}.executor.kwargs")
        if ex.get("class") != "SimulatorExecutor" or ex_kwargs.get("time_per_step", "day") != "day" or any(
            k not in ("time_per_step", "generate_portfolio_metrics", "verbose", "indicator_config") for k in ex_kwargs
        ):
            check.add(f"{key}.executor", "only the daily SimulatorExecutor (Qlib's default) is simulated")

    strategy = check.mapping(config.get("strategy"), f"{key}.strategy")
    skey = f"{key}.strategy"
    check.unknown(strategy, skey, {"class", "module_path", "kwargs"})
    if strategy.get("class") != "TopkDropoutStrategy" or strategy.get("module_path") not in STRATEGY_MODULES:
        check.add(skey, f"{strategy.get('module_path')}.{strategy.get('class')}: the only strategy is TopkDropoutStrategy")
    s = check.mapping(strategy.get("kwargs"), f"{skey}.kwargs")
    skey = f"{skey}.kwargs"
    check.unknown(s, skey, {"signal", "model", "dataset", "topk", "n_drop", "method_sell", "method_buy",
                            "hold_thresh", "only_tradable", "forbid_all_trade_at_limit", "risk_degree"})
    for name, placeholder in (("signal", "<PRED>"), ("model", "<MODEL>"), ("dataset", "<DATASET>")):
        if name in s and not _is_own_signal(s[name], placeholder):
            check.add(f"{skey}.{name}", f"{s[name]!r}: the strategy trades this workflow's predictions ({placeholder})")
    topk = check.number(s.get("topk"), f"{skey}.topk", int, 1)
    n_drop = check.number(s.get("n_drop"), f"{skey}.n_drop", int, 0)
    check.equals(s.get("method_sell", "bottom"), f"{skey}.method_sell", {"bottom"}, "drops the lowest-scored holdings (§9.3)")
    check.equals(s.get("method_buy", "top"), f"{skey}.method_buy", {"top"}, "buys the best-scored candidates (§9.3)")
    check.equals(s.get("hold_thresh", 1), f"{skey}.hold_thresh", {1}, "holdings can be sold the day after purchase")
    check.equals(s.get("only_tradable", False), f"{skey}.only_tradable", {False}, "candidates are ranked regardless of tradability")
    forbid_all = s.get("forbid_all_trade_at_limit", True)
    if not isinstance(forbid_all, bool):
        check.add(f"{skey}.forbid_all_trade_at_limit", f"expected true or false, got {forbid_all!r}")
        forbid_all = True
    risk_degree = check.number(s.get("risk_degree", 0.95), f"{skey}.risk_degree", float)
    if risk_degree is not None and not 0 < risk_degree <= 1:
        check.add(f"{skey}.risk_degree", f"must be in (0, 1], got {risk_degree}")

    bt = check.mapping(config.get("backtest"), f"{key}.backtest")
    bkey = f"{key}.backtest"
    check.unknown(bt, bkey, {"start_time", "end_time", "account", "benchmark", "exchange_kwargs", "pos_type"})
    if bt.get("pos_type", "Position") != "Position":
        check.add(f"{bkey}.pos_type", "only the ordinary Position book")
    start = check.date(bt.get("start_time"), f"{bkey}.start_time", allow_empty=True)
    end = check.date(bt.get("end_time"), f"{bkey}.end_time", allow_empty=True)
    account = check.number(bt.get("account", BACKTEST_DEFAULTS["account"]), f"{bkey}.account", float)
    if account is not None and not account > 0:
        check.add(f"{bkey}.account", f"must be positive cash, got {account}")
    benchmark = bt.get("benchmark", BACKTEST_DEFAULTS["benchmark"])
    if isinstance(benchmark, list) and all(isinstance(code, str) for code in benchmark) and benchmark:
        benchmark = tuple(benchmark)
    elif benchmark == "":
        benchmark = None  # accepted as well; the documented spelling is benchmark: null
    elif benchmark is not None and not isinstance(benchmark, str):
        check.add(f"{bkey}.benchmark", f"expected an instrument code or a list of codes, got {benchmark!r}")
        benchmark = None

    ex = check.mapping(bt.get("exchange_kwargs"), f"{bkey}.exchange_kwargs")
    ekey = f"{bkey}.exchange_kwargs"
    check.unknown(ex, ekey, {"limit_threshold", "deal_price", "open_cost", "close_cost", "min_cost", "trade_unit",
                             "impact_cost", "volume_threshold", "codes", "freq"})
    defaults = REGION_DEFAULTS.get(region, REGION_DEFAULTS["cn"])
    limit = ex.get("limit_threshold", defaults["limit_threshold"])
    if limit is None:
        limit = defaults["limit_threshold"]  # Qlib: None means "the region's default"
    elif isinstance(limit, (list, tuple)):
        check.add(f"{ekey}.limit_threshold", "limit expressions are not supported; give a number like 0.095")
        limit = None
    else:
        limit = check.number(limit, f"{ekey}.limit_threshold", float)
        if limit is not None and not limit > 0:
            check.add(f"{ekey}.limit_threshold", f"must be positive, got {limit}")
    deal = ex.get("deal_price", "close")
    if isinstance(deal, (list, tuple)) and len(deal) == 2 and len({str(d).lstrip("$") for d in deal}) == 1:
        deal = deal[0]  # the same price for buys and sells
    deal = str(deal).lstrip("$") if isinstance(deal, str) else deal
    check.equals(deal, f"{ekey}.deal_price", {"close", "open"}, "deals are at the close or the open of the day (one price for both sides)")
    costs = {}
    for name in ("open_cost", "close_cost", "min_cost"):
        costs[name] = check.number(ex.get(name, EXCHANGE_DEFAULTS[name]), f"{ekey}.{name}", float, 0)
    trade_unit = ex.get("trade_unit", defaults["trade_unit"])
    if trade_unit is not None:
        trade_unit = check.number(trade_unit, f"{ekey}.trade_unit", float)
        if trade_unit is not None and not trade_unit > 0:
            check.add(f"{ekey}.trade_unit", f"must be positive (or null for no lots), got {trade_unit}")
    if ex.get("impact_cost", 0) not in (0, 0.0):
        check.add(f"{ekey}.impact_cost", "market impact is not simulated; set 0")
    if ex.get("volume_threshold") is not None:
        check.add(f"{ekey}.volume_threshold", "volume limits are not simulated")
    check.equals(ex.get("codes", "all"), f"{ekey}.codes", {"all"}, "every instrument with prices can trade (Qlib's default)")
    check.equals(ex.get("freq", "day"), f"{ekey}.freq", {"day"}, "daily data only")

    if topk is None or n_drop is None or account is None or None in costs.values() or risk_degree is None:
        return None
    return BacktestSpec(
        start_time=start, end_time=end, account=account, benchmark=benchmark, topk=topk, n_drop=n_drop,
        risk_degree=risk_degree, forbid_all_trade_at_limit=forbid_all, limit_threshold=limit,
        deal_price=deal if deal in ("close", "open") else "close", trade_unit=trade_unit, **costs,
    )


def _is_own_signal(value: Any, placeholder: str) -> bool:
    """The strategy's signal is this workflow's predictions: ``<PRED>``, or Qlib's
    ``[<MODEL>, <DATASET>]`` pair (the Alpha360 file's spelling, with a stray space)."""
    if isinstance(value, str):
        return value.strip() == placeholder
    if placeholder == "<PRED>" and isinstance(value, (list, tuple)):
        return [str(item).strip() for item in value] == ["<MODEL>", "<DATASET>"]
    return False
