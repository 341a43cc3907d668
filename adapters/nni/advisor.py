"""The facenas NNI advisors: ``FacenasPipeline`` and ``FacenasSearch`` (``facenas nni register``).

Why advisors and not tuners. In NNI 3.0 the manager asks the tuner process for trials only at
start (``trialConcurrency`` of them) and then once per finished trial. A plain ``Tuner`` that has
nothing to give (``generate_parameters`` raising ``nni.NoMoreTrialError``) makes NNI's dispatcher
send ``NO_MORE_TRIAL_JOBS``: the experiment turns ``TUNER_NO_MORE_TRIAL`` and the manager does not
ask again until some trial ends -- so a tuner whose next stage waits for results of running trials
would have to push trials later through an undocumented callback, flipping the experiment's status
back and forth. An advisor (a ``MsgDispatcherBase`` subclass; NNI 3.0 registers it as a tuner with
``isAdvisor: true``) sees the raw commands: it keeps unanswered requests as *credit* and answers
them when the pipeline can go on (as NNI's own Hyperband does), and it says "no more trials" only
when the whole pipeline is done.

When the pipeline is done the advisor (``finish_experiment: true``, default) lowers the experiment's
``maxTrialNumber`` to the number of trials it ran, through the NNI manager's REST API on loopback
(what ``nnictl update trialnum`` does), so the experiment ends as DONE and ``nnictl`` and the portal
say so. It only ever talks to the manager's own address from ``NNI_TUNER_COMMAND_CHANNEL`` and
skips the update unless that address is a loopback one.

Resume (``nnictl resume``): the advisor's state (``advisor_state.json`` in the experiment output
folder, written after every event) is reloaded; trials NNI re-queues are awaited, trials that were
killed by the stop are run again, finished ones are kept.

``FacenasPipeline`` classArgs are :class:`~facenas.adapters.nni.pipeline.PipelineConfig` fields
(``steps``, ``name``, ``seed``, ``output_dir``, ``finish_experiment``). ``FacenasSearch`` classArgs
are those of :func:`~facenas.adapters.nni.pipeline.search_pipeline` (``space``, ``stage``,
``budget``, ``params``, ``strategy``, ``strategy_args``, ``seed``, ``retries`` ...): a facenas
ask/tell strategy searching a space as HPO trials.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

from facenas.adapters.nni import _imports, warm

_imports.nni()

from nni.runtime.msg_dispatcher_base import MsgDispatcherBase  # noqa: E402
from nni.runtime.tuner_command_channel import CommandType  # noqa: E402

from facenas.adapters.nni.paths import output_dir_in_dispatcher  # noqa: E402
from facenas.adapters.nni.pipeline import PipelineConfig, PipelineScheduler, config_from_tuner  # noqa: E402
from facenas.adapters.nni.results import STATE_FILE, write_summary  # noqa: E402
from facenas.errors import FacenasError  # noqa: E402
from facenas.utils.io import read_json, write_json  # noqa: E402

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def experiment_id_from_env() -> str | None:
    """The experiment id in the dispatcher process (its log folder is ``<workdir>/<id>/log``)."""
    log_dir = os.environ.get("NNI_LOG_DIRECTORY")
    return Path(log_dir).resolve().parent.name if log_dir else os.environ.get("NNI_EXP_ID")


def experiment_params_from_argv(argv: list[str] | None = None) -> dict[str, Any]:
    """The experiment config NNI starts the dispatcher with (``--exp_params``, base64 JSON); {} if none."""
    import base64

    argv = sys.argv if argv is None else argv
    if "--exp_params" not in argv[:-1]:
        return {}
    try:
        params = json.loads(base64.b64decode(argv[argv.index("--exp_params") + 1]))
    except (ValueError, TypeError):
        return {}
    return params if isinstance(params, dict) else {}


def training_platform_from_argv(argv: list[str] | None = None) -> str | None:
    """The training platform of this experiment, from the ``--exp_params`` NNI starts the dispatcher with."""
    ts = experiment_params_from_argv(argv).get("trainingService")
    return str(ts.get("platform")) if isinstance(ts, dict) else None


def manager_api_url() -> str | None:
    """``http://localhost:PORT[/prefix]/api/v1/nni`` of this experiment's manager, if on loopback."""
    channel = os.environ.get("NNI_TUNER_COMMAND_CHANNEL", "")
    parsed = urlparse(channel)
    if parsed.hostname not in LOOPBACK_HOSTS or not parsed.port:
        return None
    prefix = parsed.path.rsplit("/tuner", 1)[0]
    return f"http://{parsed.hostname}:{parsed.port}{prefix}/api/v1/nni"


def _http_json(url: str, method: str = "GET", body: Any = None, timeout: float = 10.0) -> Any:
    host = urlparse(url).hostname
    if host not in LOOPBACK_HOSTS:  # never talk to anything but loopback
        raise FacenasError(f"refusing to contact {host}: facenas only talks to NNI on loopback")
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only, checked above
        text = resp.read().decode() or "null"
    return json.loads(text)


class PipelineAdvisor(MsgDispatcherBase):
    """Schedules a facenas pipeline (:mod:`facenas.adapters.nni.pipeline`) as NNI trials."""

    def __init__(self, **class_args: Any):
        config = self.pipeline_config(class_args)
        experiment_id = experiment_id_from_env()
        output = config.output_dir
        if output:
            output = output.replace("{experiment_id}", experiment_id or "experiment")
        output_dir = Path(output) if output else output_dir_in_dispatcher(experiment_id)
        output_dir.mkdir(parents=True, exist_ok=True)
        scheduler = PipelineScheduler(config, output_dir, experiment_id)
        self._warm = None
        if experiment_id and training_platform_from_argv() == "local":
            # before NNI's channel opens (no other thread yet): the server is forked from this process,
            # which has nni imported; local trials then skip the interpreter's imports (adapters/nni/warm.py)
            # and share the cores instead of each starting a thread per core
            concurrency = experiment_params_from_argv().get("trialConcurrency")
            threads = warm.trial_threads(concurrency) if isinstance(concurrency, int) else None
            try:
                self._warm = warm.start(experiment_id, sorted({s.stage for s in scheduler.steps}),
                                        output_dir / "warm_server.log", threads=threads)
            except OSError as exc:
                log.warning("warm trial server not started (%s): every trial imports its modules itself", exc)
        super().__init__()
        self.experiment_id = experiment_id
        self.output_dir = output_dir
        self.scheduler = scheduler
        self.search_space: Any = None
        self.credit = 0
        # trials ended on their final result before NNI saw them end: the trial request NNI sends
        # for each of their slots was given out already (see handle_report_metric_data)
        self._anticipated = 0
        self._ended_early: set[str] = set()
        self._lock = threading.RLock()
        self._no_more_sent = False
        self._resume_pending = False
        log.info("facenas advisor %s: pipeline '%s' with steps %s, output in %s", type(self).__name__, config.name,
                 [s.name for s in self.scheduler.steps], self.output_dir)

    @classmethod
    def pipeline_config(cls, class_args: Mapping[str, Any]) -> PipelineConfig:
        return config_from_tuner("FacenasPipeline", class_args)

    # -- state -----------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.output_dir / STATE_FILE

    def _save(self) -> None:
        write_json(self.state_path, self.scheduler.state_dict())

    def _summary(self) -> None:
        try:
            write_summary(self.output_dir, self.experiment_id)
        except Exception:  # a summary problem must not stop the experiment
            log.exception("could not write the summary in %s", self.output_dir)

    def load_checkpoint(self) -> None:
        if not self.state_path.is_file():
            raise FacenasError(f"cannot resume: {self.state_path} is missing (the facenas advisor state of this experiment)")
        with self._lock:
            self.scheduler.load_state_dict(read_json(self.state_path))
            self._resume_pending = True
        log.info("resumed pipeline state from %s (%d trials so far)", self.state_path, len(self.scheduler.units))

    def save_checkpoint(self) -> None:
        with self._lock:
            self._save()

    # -- commands from the NNI manager ----------------------------------------------------------
    def handle_initialize(self, data: Any) -> None:
        self.search_space = data
        self.send(CommandType.Initialized, "")

    def handle_update_search_space(self, data: Any) -> None:
        self.search_space = data

    def handle_import_data(self, data: Any) -> None:
        log.info("ignoring %d imported result(s): the pipeline state file is the record", len(data or []))

    def handle_add_customized_trial(self, data: Any) -> None:
        items = data if isinstance(data, list) else [data]
        resumed = []
        for item in items:
            item = json.loads(item) if isinstance(item, str) else item
            if isinstance(item, Mapping) and isinstance(item.get("parameter_id"), int):
                resumed.append(int(item["parameter_id"]))
        with self._lock:
            self.scheduler.keep_resumed(resumed)

    def handle_request_trial_jobs(self, data: Any) -> None:
        with self._lock:
            if self._resume_pending:
                self.scheduler.reissue_interrupted()
                self._resume_pending = False
            asked = int(data)
            paid = min(asked, self._anticipated)
            self._anticipated -= paid
            self.credit += asked - paid
            self._fill()

    def handle_report_metric_data(self, data: Mapping[str, Any]) -> None:
        kind = data.get("type")
        if kind == "FINAL":
            pid = data.get("parameter_id")
            if pid is None:
                log.info("final metric of a customized trial %s ignored", data.get("trial_job_id"))
                return
            value = data.get("value")
            if isinstance(value, str):
                value = json.loads(value)
            with self._lock:
                unit = self.scheduler.units.get(int(pid))
                if unit is not None:
                    unit.trial_job_id = data.get("trial_job_id")
                self.scheduler.on_final(int(pid), value)
                # the trial wrote its record before this report: its dependants need not wait for NNI
                # to see the process end (up to two 0.5 s polls of NNI's manager). Its slot frees
                # within moments, so one trial goes out now against the request NNI will send for it;
                # that request is then not counted again (_anticipated).
                if self.scheduler.end_from_records(int(pid), data.get("trial_job_id")):
                    self._ended_early.add(str(data.get("trial_job_id")))
                    self._anticipated += 1
                    self.credit += 1
                    self._fill()
                    self._summary()
                else:
                    self._save()
        elif kind == "REQUEST_PARAMETER":
            log.error("multi-phase trials are not supported by the facenas advisors (trial %s)", data.get("trial_job_id"))

    def handle_trial_end(self, data: Mapping[str, Any]) -> None:
        hyper = data.get("hyper_params")
        hyper = json.loads(hyper) if isinstance(hyper, str) else hyper
        pid = (hyper or {}).get("parameter_id")
        trial_job_id = data.get("trial_job_id")
        event = data.get("event")
        with self._lock:
            if trial_job_id in self._ended_early:
                self._ended_early.discard(trial_job_id)
                if event != "SUCCEEDED":
                    log.warning("trial %s ended %s after reporting its result; the result is kept", trial_job_id, event)
                self._stop_warm_when_idle()
                return
            # NNI 3.0 may record a trial with another trial's parameters (see trial.fetch_parameters_in_order):
            # trust what the trial itself reported (its metrics, its params.json) over NNI's record.
            unit = self.scheduler.unit_of_trial(trial_job_id) if trial_job_id else None
            if unit is not None and pid is not None and unit.param_id != int(pid):
                log.warning("trial %s ran parameters %d although NNI recorded %s", trial_job_id, unit.param_id, pid)
            if unit is not None:
                pid = unit.param_id
            if pid is None:
                return
            self.scheduler.on_end(int(pid), event == "SUCCEEDED", event, trial_job_id)
            self._fill()  # the next trials first (it saves the state): the summary is not on their path
            self._summary()

    # -- scheduling ------------------------------------------------------------------------------
    def _fill(self) -> None:
        while self.credit > 0:
            nxt = self.scheduler.next_trial()
            if nxt is None:
                break
            param_id, spec = nxt
            packed = {"parameter_id": param_id, "parameter_source": "algorithm",
                      "parameters": spec.to_parameters(), "parameter_index": 0}
            self.send(CommandType.NewTrialJob, json.dumps(packed))
            self.credit -= 1
            log.info("trial %d: step %s index %d (attempt %d) -> %s", param_id, spec.step, spec.index, spec.attempt, spec.stage)
        self._save()
        if self.scheduler.finished and not self._no_more_sent:
            self._no_more_sent = True
            log.info("pipeline '%s' %s", self.scheduler.config.name, self.scheduler.status())
            self._summary()
            self.send(CommandType.NoMoreTrialJobs, json.dumps({"parameter_id": None, "parameter_source": "algorithm",
                                                               "parameters": ""}))
            self._stop_warm_when_idle()
            if self.scheduler.config.finish_experiment:
                threading.Thread(target=self._finish_experiment, daemon=True).start()

    def _stop_warm_when_idle(self) -> None:
        """Stop the warm trial server once the pipeline is done and no trial process is left in it.

        A trial ended on its final result may still be exiting in the server: stopping the server
        then would kill it, and NNI would list a finished trial as failed.
        """
        if self._warm is not None and self._no_more_sent and not self._ended_early:
            self._warm.terminate()
            self._warm = None

    def _finish_experiment(self) -> None:
        """Lower maxTrialNumber to the trials run, so the manager marks the experiment DONE."""
        base = manager_api_url()
        if base is None:
            log.info("not finishing the experiment: the NNI manager is not on a loopback address")
            return
        try:
            trials = _http_json(f"{base}/trial-jobs")
            profile = _http_json(f"{base}/experiment")
            profile["params"]["maxTrialNumber"] = len(trials)
            _http_json(f"{base}/experiment?update_type=MAX_TRIAL_NUM", "PUT", profile)
            log.info("experiment finished: maxTrialNumber set to %d", len(trials))
        except Exception as exc:  # the results are complete anyway; only the status stays "no more trial"
            log.warning("could not mark the experiment done through %s: %s", base, exc)


class SearchAdvisor(PipelineAdvisor):
    """A facenas ask/tell strategy searching a space, one HPO trial per sample (``FacenasSearch``)."""

    @classmethod
    def pipeline_config(cls, class_args: Mapping[str, Any]) -> PipelineConfig:
        return config_from_tuner("FacenasSearch", class_args)
