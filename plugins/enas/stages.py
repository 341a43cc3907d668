"""Trial stages of the ENAS method (``STAGES``): ``enas.search``, ``enas.random_arcs`` and ``enas.retrain``.

``enas.search`` runs the one-shot alternating search (Algorithm 1) as one trial: its per-epoch
reward, accuracy, latency and entropy are the trial's intermediate results (curves in the NNI
portal); it returns the top-k architectures, which ``enas.retrain`` trials (Algorithm 2) train
from scratch. Parameters (JSON):

* ``enas.search``: ``config`` -- a recipe path (a module assigning ``config = SearchConfig(...)``)
  or a dict of :class:`~facenas.plugins.enas.search.SearchConfig` fields -- plus any field as an
  override (``epochs``, ``seed`` ...). Output: ``<trial>/search`` (``final.json``, ``checkpoint.pt``,
  ``arch.json`` = the best, ``top{i}_arch.json``, ``candidates.json``); result: ``arch`` (the best's
  ``facenas.arch/1`` description), ``arch_path``, ``architectures`` (best first).
* ``enas.retrain``: ``arch`` -- an architecture description (dict or JSON path; e.g.
  ``${item.arch}`` of the search's ``architectures``); ``config`` -- a training recipe or dict
  (the CPU-scale protocol: ``recipes/configs/celeba299_enas_retrain_cpu.py``); ``latency`` -- ``{"lut": path}`` to add ``latency_ms``;
  ``search`` -- the search's record of this architecture (its validation accuracy and latency are
  copied into the result as ``search_val_acc`` / ``latency_ms``); any other key overrides a
  ``TrainConfig`` field (``num_epoch``, ``max_minutes`` ...).
* ``enas.random_arcs``: ``architectures`` -- the search's (``${search.result.architectures}``) --,
  ``latency`` -- the table the search's reward used (``{"lut": path}``) --, ``tolerance`` (0.1),
  ``max_draws`` (10000), ``seed`` (0): for each architecture a uniformly random arc of its space whose
  predicted latency is within the tolerance of its own (:mod:`.random_arcs`), the control that
  ``enas.retrain`` trains with the same recipe. Output: ``<trial>/random<i>_arch.json``; result:
  ``architectures`` (in the given order; each with ``latency_ms``, ``target_latency_ms``,
  ``relative_difference``, ``draws``, ``matches``), ``arch``, ``arch_path``, ``draws``.
"""
from __future__ import annotations

from typing import Any, Mapping

from facenas.nas.report import Reporter
from facenas.nas.stages import STAGES, auxiliary_stage, checks_params


def search_config_from_params(params: Mapping[str, Any]):
    """The :class:`SearchConfig` a stage's parameters describe."""
    from facenas.nas.stages import config_fields_from_params

    from .search import SearchConfig

    return SearchConfig.from_dict(config_fields_from_params(params, SearchConfig), source="enas.search parameters")


@STAGES.register("enas.search")
@auxiliary_stage
@checks_params(lambda params, scratch: search_config_from_params(params))
def enas_search(params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Algorithm 1 as one trial; returns the top-k ``architectures`` (best first) for retraining.

    A trial that runs again in its folder (NNI re-queues running trials when an experiment
    resumes) continues its search from ``checkpoint.pt`` unless the parameters set ``resume`` or
    ``overwrite``.
    """
    from facenas.nas.results import CHECKPOINT
    from facenas.nas.stages import continue_requeued_trial

    from .search import run_search

    cfg = search_config_from_params(params)
    out = reporter.out_dir / "search"
    continue_requeued_trial(cfg, params, out)
    final = run_search(cfg, out, reporter=reporter)
    return {**final, "checkpoint": str(out / CHECKPOINT)}


def random_arcs_config_from_params(params: Mapping[str, Any]):
    """The :class:`RandomArcsConfig` of a stage's parameters (all but ``architectures``)."""
    from .random_arcs import RandomArcsConfig

    return RandomArcsConfig.from_dict({k: v for k, v in params.items() if k != "architectures"},
                                      source="enas.random_arcs parameters")


@STAGES.register("enas.random_arcs")
@auxiliary_stage
@checks_params(lambda params, scratch: random_arcs_config_from_params(params))
def enas_random_arcs(params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Random arcs of matching predicted latency, one per searched architecture (the retrain's control)."""
    from facenas.errors import ConfigError

    from .random_arcs import draw_matching_arcs

    if not isinstance(params.get("architectures"), list):
        raise ConfigError("enas.random_arcs needs 'architectures': a list (the search's, "
                          f"\"${{search.result.architectures}}\"); got {params.get('architectures')!r:.80}")
    return draw_matching_arcs(params["architectures"], random_arcs_config_from_params(params), reporter.out_dir)


@STAGES.register("enas.retrain")
def enas_retrain(params: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Algorithm 2 for one architecture: train from scratch, verify, test; params / MFLOPs / latency."""
    from facenas.errors import ConfigError

    from .retrain import retrain_arch

    params = dict(params)
    if "arch" not in params:
        raise ConfigError(f"enas.retrain needs 'arch' (an architecture description or its path); got {sorted(params)}")
    arch = params.pop("arch")
    config = params.pop("config", None)
    latency = params.pop("latency", None)
    search = params.pop("search", None) or {}
    final = retrain_arch(arch, reporter.out_dir, reporter=reporter, config=config, overrides=params, latency=latency)
    if "val_acc" in search:
        final["search_val_acc"] = float(search["val_acc"])
    if "latency_ms" not in final and search.get("latency_ms") is not None:
        final["latency_ms"] = float(search["latency_ms"])
    if "latency_ms" not in final:  # no table to predict it from: time the trained network itself
        import os

        from facenas.plugins.runtime_stages import network_latency_ms

        ckpt = next((os.path.join(str(final.get("output", "")), n) for n in ("best.pt", "last.pt")
                     if os.path.isfile(os.path.join(str(final.get("output", "")), n))), None)
        lat = network_latency_ms(ckpt) if ckpt else None
        if lat is not None:
            final["latency_ms"] = lat
    for key in ("lfw_acc", "lfw_devtest_acc"):
        if key in final:
            final["default"] = float(final[key])
            break
    return final
