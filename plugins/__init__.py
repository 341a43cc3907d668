"""Search methods (one package each: ``ofa``, ``enas``, ``tnas``), the training engine (``engine``)
and the stages built on adapters (``data_stages``, ``runtime_stages``).

The NAS API they implement (space, strategy, stage, reporter, FLOPs) is in core: :mod:`facenas.nas`.
"""
