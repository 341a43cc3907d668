"""``variables`` of a facenas advisor: values named once in ``classArgs`` and used as ``${vars.NAME}``.

GPU experiment files keep their data paths (and other per-site values) in one block::

    tuner:
      name: FacenasPipeline
      classArgs:
        variables: {data: /train_tmp/ms1m-retinaface-t1, val: /train_tmp/ms1m-retinaface-t1/lfw.bin}
        steps:
          - {name: teacher, stage: engine.train, params: {config: ..., rec: "${vars.data}"}}

``${vars.NAME}`` alone in a string is replaced by the value itself (any YAML type); inside a longer
string by its text. An environment variable ``FACENAS_VAR_<NAME>`` (upper case) set where the
advisor runs (the shell that runs ``facenas nni create`` / ``run-local``) overrides the file's value,
parsed as YAML (``FACENAS_VAR_DATA=/data/ms1m facenas nni create recipes/nni/tnas_gpu.yml``).
Substitution happens before the pipeline is built, so the rest of facenas never sees ``vars``.

One variable is built in: ``${vars.shared_data}``, the real-data folder (``$FACENAS_SHARED_DATA``,
see :func:`facenas.utils.paths.shared_data_dir`), unless the file defines its own.
"""
from __future__ import annotations

import os
import re
from typing import Any, Mapping

from facenas.errors import ConfigError

ENV_PREFIX = "FACENAS_VAR_"
_VAR = re.compile(r"\$\{vars\.([A-Za-z_]\w*)\}")


def variable_values(variables: Any, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The file's ``variables`` with ``FACENAS_VAR_<NAME>`` overrides applied."""
    import yaml

    from facenas.utils.paths import DATA_ENV, shared_data_dir

    if variables is None:
        variables = {}
    if not isinstance(variables, Mapping):
        raise ConfigError(f"classArgs.variables must be a mapping of names to values, got {type(variables).__name__}")
    env = os.environ if environ is None else environ
    out = {}
    for name, value in variables.items():
        if not re.fullmatch(r"[A-Za-z_]\w*", str(name)):
            raise ConfigError(f"classArgs.variables: {name!r} is not a name (letters, digits, _)")
        text = env.get(ENV_PREFIX + str(name).upper())
        out[str(name)] = yaml.safe_load(text) if text is not None else value
    if "shared_data" not in out:
        text = env.get(ENV_PREFIX + "SHARED_DATA")
        out["shared_data"] = yaml.safe_load(text) if text is not None else (env.get(DATA_ENV) or str(shared_data_dir()))
    return out


def substitute_variables(class_args: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``class_args`` without ``variables``, every ``${vars.NAME}`` replaced by its value."""
    args = dict(class_args)
    values = variable_values(args.pop("variables", None), environ)
    return _substitute(args, values)


def _substitute(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _VAR.fullmatch(value)
        if whole:
            return _lookup(whole.group(1), values)
        return _VAR.sub(lambda m: str(_lookup(m.group(1), values)), value)
    if isinstance(value, Mapping):
        return {k: _substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values) for v in value]
    return value


def _lookup(name: str, values: Mapping[str, Any]) -> Any:
    if name not in values:
        raise ConfigError(f"'${{vars.{name}}}' is not defined: add '{name}' to tuner.classArgs.variables "
                          f"(defined: {sorted(values) or 'none'})")
    return values[name]
