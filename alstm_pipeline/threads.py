"""The CPU threads torch may use for training and scoring (``ALSTM_PIPELINE_TORCH_THREADS``).

torch starts one thread per core; on a machine that other jobs share, those threads spin
against each other (a vintage measured ~2–3 min on 2 idle cores took 35 min at load
10–15). A deployment caps them with the setting; 0 or unset leaves torch's default.
"""

from __future__ import annotations

from alstm_pipeline.settings import Settings, load_settings


def apply_torch_threads(settings: Settings | None = None) -> int:
    """Cap torch's intra-op threads as the settings say; returns the threads in force."""
    import torch  # with the first training or scoring step, never when definitions load

    threads = (settings or load_settings()).torch_threads
    if threads < 0:
        raise ValueError(f"ALSTM_PIPELINE_TORCH_THREADS must be ≥ 0, not {threads}")
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
