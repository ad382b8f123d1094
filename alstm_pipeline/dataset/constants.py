"""Constants of Qlib's ALSTM dataset that code without torch needs (the partition mappings)."""

# TSDatasetH(step_len=20): a sample is the 20 trading days ending at its own day (§6).
STEP_LEN = 20
