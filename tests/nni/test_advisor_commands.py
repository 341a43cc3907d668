"""The pipeline advisor driven with NNI's dispatcher commands (no manager): trial requests, finals, ends."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from facenas.adapters.nni.envelope import from_parameters
from facenas.adapters.nni.pipeline import ISSUED, SUCCEEDED
from facenas.adapters.nni.trial import run_trial

nni_dispatcher = pytest.importorskip("nni.runtime.msg_dispatcher_base")

from facenas.adapters.nni import advisor as advisor_mod  # noqa: E402
from nni.runtime.tuner_command_channel import CommandType  # noqa: E402

STEPS = [
    {"name": "supernet", "stage": "toy.train_supernet", "params": {"epochs": 1}},
    {"name": "cands", "stage": "toy.evaluate", "space": "toy", "foreach": [
        {"stem/width": 8, "block/kernel_size": 3, "block/depth": 1, "block/op": "conv"},
        {"stem/width": 16, "block/kernel_size": 5, "block/depth": 2, "block/op": "dwconv"},
        {"stem/width": 16, "block/kernel_size": 3, "block/depth": 1, "block/op": "conv"}],
     "params": {"sample": "${item}", "supernet": "${supernet.result.checkpoint}", "epochs": 1}},
]


class FakeNNI:
    """What a trial's ``nni`` module records: its final results, and whether the record was on disk then."""

    def __init__(self, record: Path):
        self.record = record
        self.finals: list[dict] = []

    def report_intermediate_result(self, metrics):
        pass

    def report_final_result(self, metrics):
        assert self.record.is_file(), "the final result was sent before result.json was written"
        self.finals.append(metrics)


@pytest.fixture
def advisor(tmp_path, monkeypatch):
    monkeypatch.setattr(nni_dispatcher.MsgDispatcherBase, "__init__", lambda self, *a, **k: None)
    for var in ("NNI_LOG_DIRECTORY", "NNI_EXP_ID", "NNI_TUNER_COMMAND_CHANNEL"):
        monkeypatch.delenv(var, raising=False)
    adv = advisor_mod.PipelineAdvisor(name="cmds", steps=STEPS, seed=0, output_dir=str(tmp_path / "out"),
                                      finish_experiment=False)
    sent: list[tuple] = []
    adv.send = lambda command, data: sent.append((command, json.loads(data) if data else data))
    adv.sent = sent
    return adv


def _new_trials(adv, since: int = 0) -> list[dict]:
    return [data for command, data in adv.sent[since:] if command == CommandType.NewTrialJob]


def _run(adv, job: dict, monkeypatch, trial_id: str) -> dict:
    """Run the trial NNI would start for ``job`` in this process; returns the final it reported."""
    spec = from_parameters(job["parameters"])
    fake = FakeNNI(Path(spec.out_dir) / "result.json")
    monkeypatch.setattr(advisor_mod._imports, "nni", lambda: fake)
    assert run_trial(spec, spec.out_dir, {"trial_id": trial_id}) == 0
    assert json.loads((Path(spec.out_dir) / "result.json").read_text())["status"] == "SUCCEEDED"
    (final,) = fake.finals  # sent once, after result.json was written
    return final


def _final(adv, job: dict, trial_id: str, value: dict) -> None:
    adv.handle_report_metric_data({"type": "FINAL", "parameter_id": job["parameter_id"], "trial_job_id": trial_id,
                                   "value": json.dumps(value)})


def _end(adv, job: dict, trial_id: str, event: str = "SUCCEEDED") -> None:
    adv.handle_trial_end({"trial_job_id": trial_id, "event": event,
                          "hyper_params": json.dumps({"parameter_id": job["parameter_id"]})})


def test_a_final_result_schedules_the_dependants_before_nni_sees_the_trial_end(advisor, monkeypatch):
    advisor.handle_request_trial_jobs(2)  # trialConcurrency 2: NNI asks for two at start
    (supernet,) = _new_trials(advisor)
    final = _run(advisor, supernet, monkeypatch, "A")
    mark = len(advisor.sent)
    _final(advisor, supernet, "A", final)
    # the supernet's record is on disk: the next step starts now, without waiting for NNI's trial end
    # and its new request; the slot it will free is given out in advance, and the one unanswered slot
    # of the start request too: two trials
    early = _new_trials(advisor, mark)
    assert [from_parameters(t["parameters"]).step for t in early] == ["cands", "cands"]
    assert advisor.scheduler.units[supernet["parameter_id"]].status == SUCCEEDED
    # NNI's trial end and its request for the freed slot then add nothing twice
    mark = len(advisor.sent)
    _end(advisor, supernet, "A")
    advisor.handle_request_trial_jobs(1)
    assert _new_trials(advisor, mark) == []
    # the next ordinary request (a candidate ended the usual way) gets the third candidate
    _end(advisor, early[0], "B", "FAILED")
    advisor.handle_request_trial_jobs(1)
    assert [from_parameters(t["parameters"]).index for t in _new_trials(advisor, mark)] == [2]


def test_a_trial_that_fails_after_its_final_keeps_its_result(advisor, monkeypatch, caplog):
    advisor.handle_request_trial_jobs(1)
    (supernet,) = _new_trials(advisor)
    final = _run(advisor, supernet, monkeypatch, "A")
    _final(advisor, supernet, "A", final)
    with caplog.at_level("WARNING"):
        _end(advisor, supernet, "A", "FAILED")
    assert "ended FAILED after reporting its result" in caplog.text
    assert advisor.scheduler.units[supernet["parameter_id"]].status == SUCCEEDED


def test_a_final_without_a_readable_record_waits_for_the_trial_end(advisor, tmp_path):
    advisor.handle_request_trial_jobs(1)
    (supernet,) = _new_trials(advisor)
    mark = len(advisor.sent)
    # a remote trial without shared storage: no result.json here
    _final(advisor, supernet, "A", {"default": float("nan"), "objective": 0.5})
    assert _new_trials(advisor, mark) == []
    assert advisor.scheduler.units[supernet["parameter_id"]].status == ISSUED
    advisor.handle_request_trial_jobs(0)
    assert _new_trials(advisor, mark) == []


def test_the_warm_server_stops_only_after_the_last_early_ended_trial_exits(advisor, monkeypatch):
    stopped = []

    class Warm:
        def terminate(self):
            stopped.append(True)

    advisor._warm = Warm()
    advisor.handle_request_trial_jobs(2)
    jobs = {"A": _new_trials(advisor)[0]}
    mark = len(advisor.sent)
    _final(advisor, jobs["A"], "A", _run(advisor, jobs["A"], monkeypatch, "A"))
    jobs["C0"], jobs["C1"] = _new_trials(advisor, mark)
    _end(advisor, jobs["A"], "A")
    mark = len(advisor.sent)
    _final(advisor, jobs["C0"], "C0", _run(advisor, jobs["C0"], monkeypatch, "C0"))
    (jobs["C2"],) = _new_trials(advisor, mark)
    for tid in ("C1", "C2"):
        _final(advisor, jobs[tid], tid, _run(advisor, jobs[tid], monkeypatch, tid))
    assert advisor.scheduler.finished and advisor._no_more_sent
    assert advisor.sent[-1][0] == CommandType.NoMoreTrialJobs
    for tid in ("C0", "C1"):
        _end(advisor, jobs[tid], tid)
        assert stopped == []  # a trial that reported its result may still be exiting in the server
    _end(advisor, jobs["C2"], "C2")
    assert stopped == [True]
