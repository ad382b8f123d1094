"""alstm_pipeline: Qlib Alpha158 + ALSTM as Dagster assets in DuckDB."""
