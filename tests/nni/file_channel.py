"""A stand-in for NNI's trial command channel in tests (``NNI_TRIAL_COMMAND_CHANNEL=import://...``):
parameters from the JSON file ``$FACENAS_TEST_PARAMETERS``, metrics appended to ``$FACENAS_TEST_METRICS``."""
from __future__ import annotations

import json
import os

from nni.runtime.trial_command_channel import TrialCommandChannel

CHANNEL = "import://tests.nni.file_channel.FileChannel"


class FileChannel(TrialCommandChannel):
    def receive_parameter(self):
        with open(os.environ["FACENAS_TEST_PARAMETERS"], encoding="utf-8") as fh:
            parameters = json.load(fh)
        return {"parameter_id": 0, "parameters": parameters, "parameter_source": "algorithm", "parameter_index": 0}

    def send_metric(self, type, parameter_id, trial_job_id, sequence, value):  # noqa: A002 - NNI's signature
        with open(os.environ["FACENAS_TEST_METRICS"], "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"type": type, "trial_job_id": trial_job_id, "value": value, "pid": os.getpid()}) + "\n")
