"""Rolling vintages trained as parallel steps: one op per vintage (vintage_pool).

The job ``train_vintage_candidates`` plans the rolling vintages of a test period, adds
their partitions, and trains each as a candidate in its own step: a process each under
the multiprocess executor, a pod each (on a GPU node with ``ALSTM_PIPELINE_TRAINING_GPU=1``)
under the k8s executor. Then a backfill of ``alstm_model`` over those vintages with config
``mode: rolling`` and ``candidates: <folder>`` (the folder is in the last step's log and
metadata) gates and registers them in vintage order, one run at a time.

The steps only read the warehouse, so they use no warehouse resource and hold no writer
lock: they train while other runs write.
"""

import json
import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from alstm_pipeline import vintage_pool, vintages
from alstm_pipeline.defs.executor import MAX_CONCURRENT_ENV, training_op_tags
from alstm_pipeline.defs.model import TEST_START, AlstmModelConfig
from alstm_pipeline.defs.partitions import VINTAGES
from alstm_pipeline.defs.resources import ModelStoreResource, WarehouseResource
from alstm_pipeline.settings import load_settings
from alstm_pipeline.warehouse import backends, tables

_SETTINGS = load_settings()


class VintageCandidatesConfig(AlstmModelConfig):
    """The test period and step, plus every alstm_model field the backfill will use (give the
    backfill the same values: a candidate must match its vintage's run)."""

    mode: str = Field(default="rolling", description="rolling: RollingGen windows ending before each vintage")
    test_start: str = Field(default=TEST_START, description="first day of the rolling evaluation")
    test_end: str = Field(default="", description="last day (empty: the last trading day of the data)")
    step: int = Field(default=_SETTINGS.retrain_step, description="trading days between vintages (RollingGen step)")


@dg.op(out=dg.DynamicOut(str))
def plan_vintage_candidates(context: dg.OpExecutionContext, config: VintageCandidatesConfig, model_store: ModelStoreResource,
                            warehouse: WarehouseResource):
    """One output per vintage of the test period: its training task as JSON (with where the
    warehouse is, which every step opens for reading: the resource takes no writer lock here)."""
    if config.warm_start or config.candidates:
        raise dg.Failure("train_vintage_candidates trains from scratch: set neither warm_start nor candidates")
    store = warehouse.get(context.log.info)
    calendar = tables.read_calendar(store)
    keys = vintages.rolling_keys(calendar, config.test_start, config.test_end or calendar[-1], config.step)
    context.instance.add_dynamic_partitions(VINTAGES.name, keys)
    folder = model_store.path() / vintage_pool.CANDIDATES / context.run_id
    settings = config.train_config()
    context.log.info(f"{len(keys)} vintages {keys[0]} … {keys[-1]} → candidates in {folder}")
    for index, key in enumerate(keys):
        task = {"plan": config.plan(key, calendar).to_dict(), "feature_set": config.feature_set, "config": settings.to_dict(),
                "warehouse": backends.location(store), "folder": str(folder), "gpu": vintage_pool.gpu_for(index, config.device)}
        yield dg.DynamicOutput(json.dumps(task), mapping_key=key.replace("-", "_"))


@dg.op(tags=training_op_tags())
def train_vintage_candidate(context: dg.OpExecutionContext, task: str) -> str:
    """Train one vintage from scratch and save it as a candidate; returns its summary (JSON)."""
    from alstm_pipeline.model import TrainConfig

    spec = json.loads(task)
    # Steps of one process each share the host's cores (one pod each has its own).
    workers = int(os.environ.get(MAX_CONCURRENT_ENV) or len(os.sched_getaffinity(0)))
    done = vintage_pool.train_candidate(vintage_pool.CandidateTask(
        plan=vintages.VintagePlan(**spec["plan"]), feature_set=spec["feature_set"], config=TrainConfig(**spec["config"]),
        warehouse=spec["warehouse"], folder=spec["folder"], threads=vintage_pool.threads_per_worker(workers),
        verbose=False, gpu=spec["gpu"]))
    context.log.info(f"vintage {done['vintage']}: {done['version']} trained in {done['seconds']:.0f} s")
    return json.dumps(done)


@dg.op
def vintage_candidates_ready(context: dg.OpExecutionContext, summaries: list[str]) -> dg.Output[str]:
    """Name the folder and the backfill that registers the candidates in order."""
    done = sorted((json.loads(summary) for summary in summaries), key=lambda item: item["vintage"])
    folder = str(Path(done[0]["path"]).parent)
    context.log.info(f"{len(done)} candidates in {folder}: now backfill alstm_model over {done[0]['vintage']} … "
                     f"{done[-1]['vintage']} with config mode: rolling, candidates: {folder}")
    return dg.Output(folder, metadata={"candidates": dg.MetadataValue.path(folder), "vintages": len(done),
                                       "train_seconds": dg.MetadataValue.json({item["vintage"]: round(item["seconds"], 1)
                                                                               for item in done})})


@dg.job(description="train the rolling vintages of a test period as parallel steps (then backfill alstm_model with candidates)")
def train_vintage_candidates():
    vintage_candidates_ready(plan_vintage_candidates().map(train_vintage_candidate).collect())
