"""A typed config reports the field it refused (``facenas.config.FieldTypeError``: config, field, value,
expected), and ``facenas nni check`` recognises a ``${...}`` reference in a typed field by that report, not by
the text of the message: a stage that re-words the refusal still has the reference left out, and a message that
merely reads like a refusal is still a problem. The one-line user message is unchanged."""
from __future__ import annotations

import dataclasses
import copy
from pathlib import Path

import pytest

from facenas.adapters.nni.check import PLACEHOLDER, _check_stage_params
from facenas.config import FieldTypeError, TypedConfig, refused_field
from facenas.errors import ConfigError
from facenas.nas.stages import STAGES, checks_params


@dataclasses.dataclass
class _Reward(TypedConfig):
    target_ms: float | None = None
    exponent: float = -0.07


@dataclasses.dataclass
class _Search(TypedConfig):
    epochs: int = 1

    reward: dict | None = None

    def check(self, source: str) -> None:
        if self.reward is not None:
            _Reward.from_dict(self.reward, source=f"{source}: reward")


def test_typed_config_reports_the_refused_field_with_the_same_one_line_message():
    with pytest.raises(FieldTypeError) as info:
        _Reward.from_dict({"target_ms": "fast"}, source="recipe.py")
    exc = info.value
    assert (exc.config, exc.field, exc.value, exc.source) == ("_Reward", "target_ms", "fast", "recipe.py")
    assert exc.expected == str(float | None)
    # the message users read, as before: what was given and what was expected, one line
    assert str(exc) == "recipe.py: field 'target_ms' = 'fast' has type str, expected float | None"
    assert isinstance(exc, ConfigError) and exc.exit_code == 2
    again = copy.deepcopy(exc)  # rebuilt through __reduce__, as pickling does
    assert (type(again), str(again), again.field, again.value) == (FieldTypeError, str(exc), "target_ms", "fast")
    # a caller that re-raised it with its own words still lets the refusal be found
    try:
        try:
            _Search.from_dict({"reward": {"exponent": "x"}})
        except ConfigError as inner:
            raise ConfigError(f"search.py: {inner}") from None
    except ConfigError as outer:
        found = refused_field(outer)
    assert (found.config, found.field, found.value) == ("_Reward", "exponent", "x")
    assert refused_field(ConfigError("field 'epochs' = 'x' has type str")) is None  # text alone is not a refusal


def _stage(name: str, check, monkeypatch) -> str:
    def stage(params, reporter):  # never run: facenas nni check only calls its check_params
        raise AssertionError("ran")

    monkeypatch.setitem(STAGES._entries, name, checks_params(check)(stage))
    return name


def _problems(stage: str, params: dict) -> list[str]:
    out: list[str] = []
    _check_stage_params(stage, params, "step 0 'x' params", Path("."), lambda where, what: out.append(f"{where}: {what}"))
    return out


def test_check_leaves_out_a_reference_the_config_refused_even_when_the_stage_rewords_the_refusal(monkeypatch):
    def reworded(params, scratch):
        try:
            return _Search.from_dict(params, source="search config")
        except ConfigError as exc:  # the stage's own words: no "field '...' = ... has type" in them
            raise ConfigError(f"the search config is invalid ({type(exc).__name__})") from exc

    stage = _stage("test.reworded_refusal", reworded, monkeypatch)
    # whole references in an int field and in a float two configs deep: left out, the rest validated
    assert _problems(stage, {"epochs": PLACEHOLDER, "reward": {"target_ms": PLACEHOLDER, "exponent": -0.1}}) == []
    # a wrong literal is still a problem, with the stage's message
    (line,) = _problems(stage, {"epochs": 2, "reward": {"target_ms": "fast"}})
    assert "the search config is invalid (FieldTypeError)" in line


def test_a_message_that_reads_like_a_refusal_is_not_one(monkeypatch):
    """Only a typed config's refusal lets a field go: another error that quotes the same words is reported."""
    def lookalike(params, scratch):
        if "target_ms" in params:
            raise ConfigError(f"field 'target_ms' = {PLACEHOLDER!r} has type str, expected float: the table has no "
                              "p20, so target_ms cannot be a reference here")

    stage = _stage("test.lookalike_refusal", lookalike, monkeypatch)
    (line,) = _problems(stage, {"target_ms": PLACEHOLDER})
    assert "the table has no p20" in line
