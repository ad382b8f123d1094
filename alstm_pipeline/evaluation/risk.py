"""Return statistics as Qlib's ``risk_analysis`` reports them (§9.5)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["TRADING_DAYS_PER_YEAR", "risk_analysis"]

# §9.5: Qlib's daily annualisation scaler is 238, not 252 (252 is only SigAnaRecord's long-short option).
TRADING_DAYS_PER_YEAR = 238


def risk_analysis(
    returns: pd.Series, N: int = TRADING_DAYS_PER_YEAR, mode: Literal["sum", "product"] = "sum"
) -> dict[str, float]:
    """Mean, std, annualized return, information ratio and max drawdown of daily returns.

    §9.5, mode "sum" (what the workflow reports): returns are added, not compounded;
    mean and std (ddof 1) of the daily values, annualized_return = mean·N,
    information_ratio = mean/std·√N, max_drawdown = lowest distance of the cumulative
    sum below its running maximum (≤ 0). Mode "product": the curve is Π(1+r), mean is
    the geometric daily mean, std is that of log(1+r), drawdown is relative to the
    running maximum of the curve. NaN days are skipped (pandas semantics).
    """
    r = pd.Series(returns, dtype="float64").dropna()
    if mode == "sum":
        mean = r.mean()
        std = r.std(ddof=1)
        annualized_return = mean * N
        cumulative = r.cumsum()
        max_drawdown = (cumulative - cumulative.cummax()).min()
    elif mode == "product":
        curve = (1.0 + r).cumprod()
        days = len(r)
        end = curve.iloc[-1] if days else np.nan
        mean = end ** (1.0 / days) - 1.0 if days else np.nan
        std = np.log1p(r).std(ddof=1)
        annualized_return = end ** (N / days) - 1.0 if days else np.nan
        max_drawdown = (curve / curve.cummax() - 1.0).min()
    else:
        raise ValueError(f"risk_analysis mode must be 'sum' or 'product', got {mode!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        information_ratio = mean / std * np.sqrt(N)
    return {
        "mean": float(mean),
        "std": float(std),
        "annualized_return": float(annualized_return),
        "information_ratio": float(information_ratio),
        "max_drawdown": float(max_drawdown),
    }
