"""The training engine's method-independent parts: the resumable loop, checkpoints, optimisers, DDP.

Nothing here knows about faces: the face trainer (``engine.train``), the OFA supernet, the TNAS
and ENAS searches supply their data, models and steps and run on :class:`~facenas.engine.loop.Loop`.
"""
