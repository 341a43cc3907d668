"""Model-space bridge: facenas spaces as NNI ModelSpaces; freeze == build; the portal's search-space JSON."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facenas.adapters.nni.space import sample_from_parameters, search_space_json, to_model_space
from facenas.nas.space import SPACES, InvalidSampleError, create_space

REPO = Path(__file__).resolve().parents[2]


def test_search_space_json_is_our_choices_in_nni_choice_format():
    space = create_space("toy")
    js = search_space_json("toy")
    assert list(js) == space.labels()
    for choice in space.choices():
        assert js[choice.label] == {"_type": "choice", "_value": list(choice.values)}
    assert json.loads(json.dumps(js)) == js  # plain JSON


def test_committed_search_space_files_match_the_generator():
    """recipes/nni/spaces/*.json (shown by plain nnictl) must not drift from the spaces they describe.

    ``<space>.json`` is the space at its default config; any other file is checked against the
    search space `facenas nni create` generates for the experiment files that reference it.
    """

    from facenas.adapters.nni.launch import load_yaml, prepare_config
    from facenas.nas.space import SPACES

    spaces_dir = REPO / "recipes" / "nni" / "spaces"
    files = sorted(spaces_dir.glob("*.json"))
    assert files, "recipes/nni/spaces/ holds the generated search spaces"
    referenced: dict[str, list[Path]] = {}
    for yml in sorted((REPO / "recipes" / "nni").glob("*.yml")):
        ref = (load_yaml(yml) or {}).get("searchSpaceFile")
        if ref:
            referenced.setdefault((yml.parent / ref).resolve().name, []).append(yml)
    for path in files:
        committed = json.loads(path.read_text())
        if path.stem in SPACES.names():
            assert committed == search_space_json(path.stem), (
                f"{path} is stale: regenerate with `facenas nni space {path.stem} --output {path.relative_to(REPO)}`")
            continue
        assert path.name in referenced, f"{path} is neither a space's default nor referenced by an experiment file"
        for yml in referenced[path.name]:
            cfg, _ = prepare_config(yml)
            assert committed == cfg["searchSpace"], f"{path} differs from the search space of {yml.name}"


def test_sample_from_parameters_ignores_extra_keys_and_validates():
    params = {"stem/width": 16, "block/kernel_size": 5, "block/depth": 2, "block/op": "conv", "facenas": {}}
    assert sample_from_parameters(create_space("toy"), params) == {k: v for k, v in params.items() if k != "facenas"}
    with pytest.raises(InvalidSampleError, match="missing label"):
        sample_from_parameters(create_space("toy"), {"stem/width": 16})


def _same_module(a: torch.nn.Module, b: torch.nn.Module, input_size) -> None:
    assert type(a) is type(b)
    assert repr(a) == repr(b)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    a.eval(), b.eval()
    x = torch.randn(2, 3, *input_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def _check_freeze_equals_build(name: str, n_samples: int) -> None:
    from nni.nas.space import SimplifiedModelSpace

    space = create_space(name)
    model_space = to_model_space(space)
    assert set(model_space.simplify()) == set(space.labels())
    assert {k: m.as_legacy_dict() for k, m in model_space.simplify().items()} == search_space_json(space)
    simplified = SimplifiedModelSpace.from_model(model_space, None)
    rng = np.random.default_rng(0)
    for _ in range(n_samples):
        sample = space.sample(rng)
        torch.manual_seed(0)
        built = space.build(sample)
        torch.manual_seed(0)
        frozen = model_space.freeze(sample)
        _same_module(built, frozen, space.input_size)
        assert frozen.facenas_sample == space.validate(sample)
        # NNI's own path in NasExperiment: re-create the space under model_context(sample)
        torch.manual_seed(0)
        recreated = simplified.freeze(dict(sample)).executable_model()
        _same_module(built, recreated, space.input_size)


@pytest.mark.nni
def test_freeze_equals_build_on_the_toy_space():
    _check_freeze_equals_build("toy", 6)
    model_space = to_model_space("toy")
    out = model_space(torch.randn(1, 3, 32, 32))  # the dry-run network: NNI's sanity forward
    assert out.shape == (1, 32)
    with pytest.raises(InvalidSampleError):
        model_space.freeze({"stem/width": 12, "block/kernel_size": 3, "block/depth": 1, "block/op": "conv"})


@pytest.mark.nni
@pytest.mark.slow
@pytest.mark.parametrize("name", SPACES.names())
def test_freeze_equals_build_on_every_registered_space(name):
    _check_freeze_equals_build(name, 2)
