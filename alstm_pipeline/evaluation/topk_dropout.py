"""TopkDropout: which holdings to sell and which stocks to buy on one day (§9.1, §9.3)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["DEAL_PRICES", "TopkDropoutConfig", "TradePlan", "plan_topk_dropout", "rank_by_score"]

DEAL_PRICES = ("close", "open")


@dataclass(frozen=True)
class TopkDropoutConfig:
    """Strategy and exchange settings of the backtest (§9.1), Qlib's defaults where they apply.

    trade_unit: lot size in raw shares. Qlib's CN setting is 100; for US equities we use
        1 (Qlib's "us" region value): whole shares. None allows fractional shares.
    limit_threshold: daily price limit on the raw ``change``; a stock whose |change|
        reaches it cannot trade that day in either direction. US markets have no daily
        limits, so the default is None (Qlib's CN workflow used 0.095).
    forbid_all_trade_at_limit: Qlib's strategy default True: a stock at either limit can
        neither be bought nor sold. False leaves the exchange's own rule: a stock up at
        its limit cannot be bought, one down at its limit cannot be sold.
    deal_price: "close" (Qlib's default) or "open": the price orders are sized and dealt
        at. Holdings are always marked at the close (§9.4).
    """

    topk: int = 50
    n_drop: int = 5
    open_cost: float = 0.0005
    close_cost: float = 0.0015
    min_cost: float = 5.0
    account: float = 1e8
    risk_degree: float = 0.95
    trade_unit: float | None = 1.0
    limit_threshold: float | None = None
    forbid_all_trade_at_limit: bool = True
    deal_price: str = "close"

    def __post_init__(self) -> None:
        problems = []
        if self.topk < 1:
            problems.append(f"topk must be >= 1, got {self.topk}")
        if self.n_drop < 0:
            problems.append(f"n_drop must be >= 0, got {self.n_drop}")
        for name in ("open_cost", "close_cost", "min_cost"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.account > 0:
            problems.append(f"account must be > 0, got {self.account}")
        if not 0 < self.risk_degree <= 1:
            problems.append(f"risk_degree must be in (0, 1], got {self.risk_degree}")
        if self.trade_unit is not None and not self.trade_unit > 0:
            problems.append(f"trade_unit must be > 0 or None, got {self.trade_unit}")
        if self.limit_threshold is not None and not self.limit_threshold > 0:
            problems.append(f"limit_threshold must be > 0 or None, got {self.limit_threshold}")
        if self.deal_price not in DEAL_PRICES:
            problems.append(f"deal_price must be one of {DEAL_PRICES}, got {self.deal_price!r}")
        if problems:
            raise ValueError("invalid TopkDropoutConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class TradePlan:
    """One day's intended orders: ``sell`` in ranking order, ``buy`` best first."""

    sell: list[str]
    buy: list[str]


def rank_by_score(names: Sequence[str], scores: Mapping[str, float]) -> list[str]:
    """Names sorted by score, best first; unscored names last.

    Ties (and the unscored tail) are ordered by instrument code so the result is
    deterministic; Qlib leaves the order of equal scores to its sort.
    """
    scored = sorted((n for n in names if n in scores), key=lambda n: (-scores[n], n))
    unscored = sorted(n for n in names if n not in scores)
    return scored + unscored


def plan_topk_dropout(
    scores: Mapping[str, float],
    held: Sequence[str],
    topk: int,
    n_drop: int,
    ranked_scored: Sequence[str] | None = None,
) -> TradePlan:
    """§9.3's decision: drop up to ``n_drop`` of the worst holdings, refill from the best non-held.

    ``scores`` is the signal of the previous trading day; ``held`` the current holdings
    (delisted or suspended ones included). ``ranked_scored`` may pass
    ``rank_by_score(list(scores), scores)`` when the caller already has it.

    Small universes: with M scored instruments, topk is clipped to M and n_drop to
    M − topk, so that a sale only happens when a replacement candidate exists. When
    M ≥ topk + n_drop (the normal case) nothing changes; below that, Qlib's rule would
    sell n_drop names it cannot replace and let the book shrink and refill every other
    day, while this keeps the best min(topk, M) names (all of them when M ≤ topk).
    """
    n_scored = len(scores)
    topk = min(topk, n_scored)
    n_drop = min(n_drop, n_scored - topk)
    if ranked_scored is None:
        ranked_scored = rank_by_score(list(scores), scores)

    last = rank_by_score(held, scores)
    held_set = set(held)
    # k ≤ 0 when unsellable holdings have pushed the book past topk + n_drop: no candidates then.
    n_candidates = max(n_drop + topk - len(last), 0)
    today = [n for n in ranked_scored if n not in held_set][:n_candidates]
    comb = rank_by_score(last + today, scores)
    dropped = set(comb[max(len(comb) - n_drop, 0):]) if n_drop > 0 else set()
    sell = [n for n in last if n in dropped]
    # §9.3: the buy list is sized assuming every planned sale succeeds.
    n_buy = max(len(sell) + topk - len(last), 0)
    return TradePlan(sell=sell, buy=today[:n_buy])
