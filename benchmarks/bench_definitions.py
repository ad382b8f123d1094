"""How long the code location takes to load, for several sources (issue: no I/O at load).

    python benchmarks/bench_definitions.py [PANEL]   (default ../shared/data/sp500_daily.parquet)

Each case is a fresh Python process that imports the definitions and resolves the asset
graph, as `dg list defs` and the UI's code server do; the source is the bundled sample,
a missing path, a folder of 400 per-symbol CSVs with 5 broken files, and the full panel.
Prints the median of 3 runs per case and the bare `import dagster` / `import torch` times.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PANEL = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "data" / "sp500_daily.parquet"
LOAD = "from alstm_pipeline.definitions import build_definitions; build_definitions().resolve_asset_graph()"


def timed(code: str, source: Path | None = None, runs: int = 3) -> float:
    env = dict(os.environ)
    if source is not None:
        env["ALSTM_PIPELINE_SOURCE"] = str(source)
    seconds = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, capture_output=True)
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds)


def csv_folder(root: Path) -> Path:
    import pandas as pd

    folder = root / "csv400"
    folder.mkdir()
    source = PANEL if PANEL.exists() else REPO / "data" / "sp500_sample.parquet"
    panel = pd.read_parquet(source)
    for number, (code, bars) in enumerate(panel.groupby("instrument")):
        if number >= 400:
            break
        bars.drop(columns="instrument").to_csv(folder / f"{code}.csv", index=False)
    for number in range(5):
        (folder / f"BAD{number}.csv").write_text("<html>not a csv</html>\n")
    return folder


def main() -> None:
    print(f"import dagster: {timed('import dagster'):.2f} s   import torch: {timed('import torch'):.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "bundled sample": REPO / "data" / "sp500_sample.parquet",
            "missing path": Path(tmp) / "nowhere",
            "400 CSVs + 5 bad": csv_folder(Path(tmp)),
        }
        if PANEL.exists():
            cases["full panel (1.9 M rows)"] = PANEL
        for name, source in cases.items():
            print(f"load definitions, {name:<24} {timed(LOAD, source):.2f} s")


if __name__ == "__main__":
    main()
