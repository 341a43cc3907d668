"""Search methods (one package each: ``ofa``, ``enas``, ``tnas``) and what they share.

Shared pieces: :mod:`.space` (the search-space interface and registry), :mod:`.flops`
(multiply-accumulate counting), :mod:`.strategy` (the strategy interface and registry).
"""
