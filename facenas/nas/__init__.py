"""The NAS API every method builds on (core: imports nothing above ``facenas``).

- :mod:`.space` -- the search-space interface, samples, ``facenas.arch/1`` descriptions, ``SPACES``
- :mod:`.strategy` -- the ask/tell strategy interface, random search, ``STRATEGIES``
- :mod:`.stages` -- the stage interface (a trial's unit of work), ``STAGES``, running a stage
- :mod:`.report` -- how a stage reports intermediate and final metrics
- :mod:`.flops` -- multiply-accumulate counting
- :mod:`.backbones` -- ``BACKBONES`` and ``get_model`` (a network by name or from a description)
- :mod:`.searched` -- a described network at another input size, and under ``fp16``

The registries name the modules that populate them (adapters' backbones, plugins' stages, the toy space)
as strings and import them on first lookup, so this package never imports a higher layer.
"""
