"""Alpha360 features, processors and the flat-row ALSTM forward against Qlib 0.9.7's own
outputs (shared/golden/alpha360 or the vendored slice), and the incremental contract.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from alstm_pipeline.dataset import (
    ALSTM_FEATURES,
    apply_normalizer,
    fit_normalizer,
    infer_frame,
    learn_frame,
    process_features,
    process_label,
)
from alstm_pipeline.features import (
    ALPHA360_LOOKBACK_ROWS,
    ALPHA360_NAMES,
    compute_alpha158,
    compute_alpha360,
    compute_label,
)
from alstm_pipeline.model import ALSTMModel, flat_set, parameter_count, predict_flat
from alstm_pipeline_tests.alpha360_golden import alpha360_golden_dir, alpha360_input_path

# Golden README: relative 1e-4, absolute 1e-5 near zero, identical NaN positions.
RTOL, ATOL = 1e-4, 1e-5
FIT_START, FIT_END = "2012-01-01", "2014-12-31"
KEYS = ["instrument", "date"]


@pytest.fixture(scope="module")
def golden_dir():
    return alpha360_golden_dir()


@pytest.fixture(scope="module")
def golden_input(golden_dir) -> pd.DataFrame:
    return pd.read_parquet(alpha360_input_path(golden_dir))


@pytest.fixture(scope="module")
def golden(golden_dir) -> pd.DataFrame:
    return pd.read_parquet(golden_dir / "alpha360.parquet")


@pytest.fixture(scope="module")
def qlib_processed(golden_dir) -> pd.DataFrame:
    return pd.read_parquet(golden_dir / "alstm360_processed.parquet")


@pytest.fixture(scope="module")
def features(golden_input) -> pd.DataFrame:
    # Computed on the whole input; compared on the golden rows (a subset of dates).
    return compute_alpha360(golden_input)


@pytest.fixture(scope="module")
def ours_on_golden_rows(features, golden_input, golden) -> pd.DataFrame:
    ours = features.merge(compute_label(golden_input), on=KEYS, how="outer", validate="one_to_one")
    return golden[KEYS].merge(ours, on=KEYS, how="left", validate="one_to_one")


def _assert_close_same_nan(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    got, expected = got.astype(np.float64), expected.astype(np.float64)
    nan_mismatch = np.flatnonzero(np.isnan(got) != np.isnan(expected))
    assert nan_mismatch.size == 0, f"{what}: NaN positions differ at rows {nan_mismatch[:5].tolist()}"
    both = ~np.isnan(expected)
    loose = np.abs(got[both] - expected[both]) > ATOL + RTOL * np.abs(expected[both])
    assert not loose.any(), f"{what}: {loose.sum()} cells outside rel {RTOL} / abs {ATOL}"


# --- features ----------------------------------------------------------------------------


def test_names_are_qlibs_360_in_loader_order(golden):
    assert len(ALPHA360_NAMES) == 360 and len(set(ALPHA360_NAMES)) == 360
    assert ALPHA360_NAMES[:2] == ("CLOSE59", "CLOSE58") and ALPHA360_NAMES[59] == "CLOSE0"
    assert ALPHA360_NAMES[60] == "OPEN59" and ALPHA360_NAMES[-1] == "VOLUME0"
    assert list(golden.columns) == [*KEYS, *ALPHA360_NAMES, "LABEL0"]


@pytest.mark.parametrize("column", [*ALPHA360_NAMES, "LABEL0"])
def test_column_matches_qlib_golden_values(ours_on_golden_rows, golden, column):
    got = ours_on_golden_rows[column].to_numpy()
    assert got.dtype == np.float32
    _assert_close_same_nan(got, golden[column].to_numpy(), column)


def test_every_cell_is_bit_identical_to_qlib(ours_on_golden_rows, golden):
    # Golden README: plain float32 arithmetic reproduced every cell, so we demand it too.
    columns = [*ALPHA360_NAMES, "LABEL0"]
    assert np.array_equal(
        ours_on_golden_rows[columns].to_numpy(), golden[columns].to_numpy(), equal_nan=True
    )


def test_data_quirks_vwap_nan_and_lag0_exactly_one(features, golden_input):
    vwap = [f"VWAP{lag}" for lag in range(60)]
    assert features[vwap].isna().all().all()  # no $vwap field in the input (§1.3)
    has_bar = features[KEYS].merge(golden_input[KEYS].assign(bar=True), on=KEYS, how="left")["bar"].notna()
    assert (features.loc[has_bar.to_numpy(), ["CLOSE0", "VOLUME0"]] == 1.0).all().all()


def test_rows_are_alpha158_rows(features, golden_input):
    # Same row convention as compute_alpha158 (the asset layer stores both the same way).
    rows158 = compute_alpha158(golden_input.head(3000))[KEYS]
    pd.testing.assert_frame_equal(compute_alpha360(golden_input.head(3000))[KEYS], rows158)


def test_vwap_field_is_used_when_present(golden_input):
    fields = golden_input.head(2000).copy()
    fields["vwap"] = (fields["high"] + fields["low"]) / np.float32(2)
    got = compute_alpha360(fields)
    expected = (fields["vwap"] / fields["close"]).to_numpy(np.float32)
    np.testing.assert_array_equal(got["VWAP0"].to_numpy(), expected)


# --- incremental == full ----------------------------------------------------------------


@pytest.fixture(scope="module")
def suspended_input(golden_input) -> pd.DataFrame:
    """Golden input with made-up suspensions, so slices cross NaN calendar rows."""
    calendar = np.sort(golden_input["date"].unique())
    gaps = {"AES": calendar[400:403], "HUM": calendar[900:902], "KHC": calendar[1000:1001]}
    drop = np.zeros(len(golden_input), dtype=bool)
    for instrument, days in gaps.items():
        drop |= (golden_input["instrument"] == instrument).to_numpy() & golden_input["date"].isin(days).to_numpy()
    return golden_input[~drop].reset_index(drop=True)


@pytest.mark.parametrize("day_index", [403, 902, 1001, 1150])
def test_day_from_lookback_slice_equals_full_history(suspended_input, day_index):
    fields = suspended_input
    calendar = np.sort(fields["date"].unique())
    full = compute_alpha360(fields)
    first_dates = fields.groupby("instrument")["date"].min()
    last_dates = fields.groupby("instrument")["date"].max()
    day = calendar[day_index]
    window = calendar[day_index - ALPHA360_LOOKBACK_ROWS : day_index + 1]
    sliced = compute_alpha360(fields[fields["date"].isin(window)], last_dates=last_dates, first_dates=first_dates)
    got = sliced[sliced["date"] == day].reset_index(drop=True)
    expected = full[full["date"] == day].reset_index(drop=True)
    assert len(got) > 0
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_lookback_constant_is_tight(golden_input):
    # One row fewer than ALPHA360_LOOKBACK_ROWS loses CLOSE59: the constant is not padded.
    calendar = np.sort(golden_input["date"].unique())
    day_index = 1150
    short = calendar[day_index - ALPHA360_LOOKBACK_ROWS + 1 : day_index + 1]
    sliced = compute_alpha360(golden_input[golden_input["date"].isin(short)])
    assert sliced.loc[sliced["date"] == calendar[day_index], "CLOSE59"].isna().all()


# --- processors ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def processed(features) -> pd.DataFrame:
    return process_features(features, FIT_START, FIT_END, columns=ALPHA360_NAMES)


def test_processed_features_match_qlib(processed, qlib_processed):
    assert list(qlib_processed.columns[2:362]) == list(ALPHA360_NAMES)
    ours = qlib_processed[["date", "instrument"]].merge(processed, on=["date", "instrument"], how="left")
    got = ours[list(ALPHA360_NAMES)].to_numpy()
    expected = qlib_processed[list(ALPHA360_NAMES)].to_numpy()
    assert got.dtype == np.float32 and not np.isnan(got).any()
    _assert_close_same_nan(got.ravel(), expected.ravel(), "processed Alpha360")
    assert np.array_equal(got, expected)  # bit for bit, as the golden README reports


def test_learn_label_matches_qlib(golden_input, qlib_processed):
    learn = process_label(compute_label(golden_input))
    ours = qlib_processed[["date", "instrument"]].merge(learn, on=["date", "instrument"], how="left")
    got, expected = ours["LABEL0"].to_numpy(), qlib_processed["LABEL0_learn"].to_numpy()
    assert got.dtype == np.float64
    _assert_close_same_nan(got, expected, "LABEL0_learn")


def test_statistics_table_has_the_alpha158_shape(features):
    stats = fit_normalizer(features, FIT_START, FIT_END, columns=ALPHA360_NAMES)
    assert list(stats.columns) == ["feature", "median", "scale"]
    assert list(stats["feature"]) == list(ALPHA360_NAMES)
    assert stats["median"].dtype == np.float32 and stats["scale"].dtype == np.float32
    is_vwap = stats["feature"].str.startswith("VWAP")
    assert stats.loc[is_vwap, ["median", "scale"]].isna().all().all()  # Qlib's NaN median
    assert stats.loc[~is_vwap, ["median", "scale"]].notna().all().all()
    # MAD 0 → scale is 1e-12 × 1.4826 (float32), which sends CLOSE0 = 1 to exactly 0.
    close0 = stats.set_index("feature").loc["CLOSE0"]
    assert close0["median"] == 1.0 and close0["scale"] == np.float32(np.float32(1e-12) * np.float32(1.4826))
    # apply with a stored table == the one-call chain
    pd.testing.assert_frame_equal(
        apply_normalizer(features, stats, columns=ALPHA360_NAMES),
        process_features(features, FIT_START, FIT_END, columns=ALPHA360_NAMES),
        check_exact=True,
    )


def test_an_all_nan_column_other_than_vwap_is_rejected(features):
    broken = features[[*KEYS, "CLOSE5", "VWAP5"]].copy()
    broken["CLOSE5"] = np.nan
    with pytest.raises(ValueError, match="CLOSE5"):
        fit_normalizer(broken, FIT_START, FIT_END, columns=["CLOSE5", "VWAP5"])


def test_default_column_set_is_still_the_twenty_alstm_features(golden_input):
    stats = fit_normalizer(compute_alpha158(golden_input), FIT_START, FIT_END)
    assert list(stats["feature"]) == list(ALSTM_FEATURES)


def test_data_keys_take_the_column_set(processed, golden_input):
    label = compute_label(golden_input)
    learn = learn_frame(processed, process_label(label), columns=ALPHA360_NAMES)
    infer = infer_frame(processed, label, columns=ALPHA360_NAMES)
    assert list(learn.columns) == [*KEYS, *ALPHA360_NAMES, "LABEL0"]
    assert len(infer) == len(processed) and learn["LABEL0"].notna().all()


# --- model --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def golden_forward(golden_dir):
    with np.load(golden_dir / "alstm360_forward.npz", allow_pickle=False) as npz:
        params = {k.removeprefix("param/"): torch.from_numpy(npz[k]) for k in npz.files if k.startswith("param/")}
        return params, npz["inputs"], npz["outputs"], npz["date"], npz["instrument"]


def test_qlib_state_dict_loads_and_seed_0_init_matches(golden_forward):
    params = golden_forward[0]
    torch.manual_seed(0)
    model = ALSTMModel(d_feat=6)
    assert parameter_count(model) == 52_609
    assert list(model.state_dict()) == list(params)
    for key, value in params.items():
        assert torch.equal(model.state_dict()[key], value), key
    model.load_state_dict(params, strict=True)


def test_flat_rows_forward_matches_qlib(golden_forward):
    params, inputs, expected = golden_forward[:3]
    model = ALSTMModel(d_feat=6)
    model.load_state_dict(params)
    with torch.no_grad():
        got = model.eval()(torch.from_numpy(inputs)).numpy()
    assert got.shape == (400,) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_flat_rows_are_feature_major_lags_oldest_first(golden_forward):
    params, inputs = golden_forward[:2]
    model = ALSTMModel(d_feat=6)
    model.load_state_dict(params)
    x = torch.from_numpy(inputs[:16])
    # Step t of the window holds lag 59 - t of (CLOSE, OPEN, HIGH, LOW, VWAP, VOLUME).
    windows = torch.stack([x[:, [g * 60 + t for g in range(6)]] for t in range(60)], dim=1)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), model(windows))
    with pytest.raises(ValueError, match="multiple of d_feat"):
        model(x[:, :359])


def test_golden_inputs_are_our_processed_test_rows(golden_forward, processed):
    _, inputs, _, dates, instruments = golden_forward
    keys = pd.DataFrame({"date": pd.to_datetime(dates), "instrument": instruments})
    ours = keys.merge(processed, on=["date", "instrument"], how="left")
    np.testing.assert_array_equal(ours[list(ALPHA360_NAMES)].to_numpy(), inputs)


def test_predict_flat_scores_rows_in_batches_with_the_partial_one(golden_forward):
    params, inputs, expected, dates, instruments = golden_forward
    model = ALSTMModel(d_feat=6)
    model.load_state_dict(params)
    frame = pd.DataFrame(inputs, columns=list(ALPHA360_NAMES))
    frame.insert(0, "date", pd.to_datetime(dates))
    frame.insert(0, "instrument", instruments)
    frame["LABEL0"] = np.nan
    samples = flat_set(frame, ALPHA360_NAMES)  # already date-major: order unchanged
    assert np.array_equal(samples.instruments, instruments)
    scores = predict_flat(model, samples, batch_size=150, device="cpu")  # 150, 150, 100
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-5)
