"""Evolutionary search of a subnet under a cost bound (Savchenko et al., Algorithm 1).

Population ``P`` of subnets whose cost (latency from a lookup table, or FLOPs; :mod:`.costs`)
is within the bound; each generation keeps the top ``K = floor(P * K_r)`` as parents, chosen by
QuickSelect driven by the comparator (linear number of comparisons per generation, instead of
the quadratic number a full ranking by pairwise comparisons needs), and makes ``M = floor(P * M_r)``
children by mutation (each gene -- a stage's depth, a block's kernel size or expand ratio --
resampled with probability ``P_m``) and ``P - M`` by uniform crossover of two parents. After
``T`` generations the top-1 subnet is chosen by QuickSelect again. Defaults are the paper's
(= OFA's EvolutionFinder): ``T = 500, P = 100, K_r = 0.25, M_r = 0.5, P_m = 0.1``.

Two details of the printed Algorithm 1 are read as the text says, and are configurable:

* line 15 loops ``K - M`` times; Sec. IV-B says the remaining ``P - floor(P M_r)`` subnets come
  from crossover, so ``P - M`` crossovers are made;
* line 18 replaces the population by the children; OFA's EvolutionFinder (which the paper
  modifies and whose defaults it keeps) carries the parents over, so the best subnet found is
  never lost. ``keep_parents=True`` (default) does that; ``False`` follows line 18 literally.

Every sampling loop is bounded: an infeasible bound fails at once naming the smallest reachable
cost; rejection sampling of the initial population falls back to shrinking a sample towards the
cheapest subnet; a child that stays infeasible after ``max_resample_rounds`` redraws is replaced
by its (feasible) parent. Everything runs on integer genomes in numpy (no per-subnet Python).

The same evolution with OFA's MLP predictor ranks by predicted accuracy (a sort), for comparison.
:class:`OFAEvolutionStrategy` is the ask/tell form for multi-trial search (e.g. inside NNI), where
fitness is a measured metric.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from facenas.config import TypedConfig
from facenas.errors import ConfigError
from facenas.nas.space import Sample
from facenas.nas.strategy import STRATEGIES, SearchExhausted, Strategy
from facenas.utils.seed import make_rng

from .costs import AdditiveCost
from .predictors import Comparator, MLPPredictor, Projections
from .space import OFASpace

log = logging.getLogger(__name__)


@dataclasses.dataclass
class EvolutionConfig(TypedConfig):
    """Hyper-parameters of Algorithm 1 (paper / OFA defaults).

    Attributes:
        generations: ``T``.
        population_size: ``P``.
        parent_ratio: ``K_r`` (parents ``K = floor(P K_r)``).
        mutation_ratio: ``M_r`` (mutated children ``M = floor(P M_r)``, the rest by crossover).
        mutation_prob: ``P_m``, per gene.
        keep_parents: carry the parents into the next population (OFA) instead of replacing it.
        max_resample_rounds: redraws of infeasible samples before the fallback.
        top_k: architectures returned (ordered by the ranker among themselves).
        seed: the search's random generator.
        threads: BLAS threads during the search (one: its matrix products are small, and two
            threads on the shared 2-core machine were several times slower than one).
    """

    generations: int = 500
    population_size: int = 100
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutation_prob: float = 0.1
    keep_parents: bool = True
    max_resample_rounds: int = 100
    top_k: int = 5
    seed: int = 0
    threads: int = 1

    def check(self, source: str) -> None:
        if self.generations < 0 or self.population_size < 2:
            raise ConfigError(f"{source}: need generations >= 0 and population_size >= 2")
        if not 0 < self.parent_ratio <= 1 or int(self.population_size * self.parent_ratio) < 1:
            raise ConfigError(f"{source}: parent_ratio={self.parent_ratio} must give at least one parent "
                              f"of population_size={self.population_size}")
        if not 0 <= self.mutation_ratio <= 1 or not 0 <= self.mutation_prob <= 1:
            raise ConfigError(f"{source}: mutation_ratio and mutation_prob must be in [0, 1]")
        if self.max_resample_rounds < 1 or self.top_k < 1:
            raise ConfigError(f"{source}: max_resample_rounds and top_k must be >= 1")

    @property
    def num_parents(self) -> int:
        return int(math.floor(self.population_size * self.parent_ratio))

    @property
    def num_mutations(self) -> int:
        return int(math.floor(self.population_size * self.mutation_ratio))


# -- rankers: who is better ------------------------------------------------------------------------------
class Ranker(Protocol):
    """Ranks a population; ``state`` holds per-architecture precomputation (carried with parents)."""

    calls: int

    def prepare(self, genomes: np.ndarray, known: Any = None) -> Any: ...

    def take(self, state: Any, index: np.ndarray) -> Any: ...

    def concat(self, states: Sequence[Any]) -> Any: ...

    def top(self, state: Any, n: int, k: int, rng: np.random.Generator) -> np.ndarray: ...

    def order(self, state: Any, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def quickselect_top(n: int, k: int, compare_to_pivot: Callable[[np.ndarray, int], np.ndarray],
                    rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Indices of the top ``k`` of ``n`` items by QuickSelect with a pairwise comparator.

    ``compare_to_pivot(others, pivot)`` answers, in one batched call, +1 / 0 / -1 for each of
    ``others``: better than the pivot / the same architecture / not better. Returns the
    (unordered) top ``k`` and the number of comparisons made: about ``2n``-``3.4n`` on average
    for random pivots, i.e. linear in ``n`` (Sec. IV-B). Copies of the pivot are split off in the
    same step (three-way partition), so a population full of duplicates -- common late in an
    evolution -- stays linear. Terminates for any comparator, transitive or not (the candidate
    set shrinks every round).
    """
    candidates = np.arange(n)
    chosen: list[np.ndarray] = []
    calls = 0
    while k > 0:
        if len(candidates) <= k:
            chosen.append(candidates)
            break
        pivot = int(candidates[rng.integers(len(candidates))])
        others = candidates[candidates != pivot]
        result = compare_to_pivot(others, pivot)
        calls += len(others)
        above = others[result > 0]
        if len(above) >= k:
            if len(above) == k:
                chosen.append(above)
                break
            candidates = above
            continue
        group = np.concatenate([[pivot], others[result == 0]])
        chosen.append(above)
        if len(above) + len(group) >= k:
            chosen.append(group[:k - len(above)])
            break
        chosen.append(group)
        k -= len(above) + len(group)
        candidates = others[result < 0]
    top = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    return top.astype(np.int64), calls


_KEY_WEIGHTS = np.random.default_rng(20230628).integers(1, 2**63, size=256, dtype=np.int64).astype(np.uint64)


def genome_keys(space: OFASpace, genomes: np.ndarray) -> np.ndarray:
    """64-bit keys of the canonical genomes: equal subnets get equal keys (random linear hash)."""
    canon = space.canonical_genomes(genomes).astype(np.uint64)
    if canon.shape[1] > len(_KEY_WEIGHTS):
        raise ValueError(f"genomes longer than {len(_KEY_WEIGHTS)} genes")
    return (canon * _KEY_WEIGHTS[:canon.shape[1]]).sum(axis=1, dtype=np.uint64)


@dataclasses.dataclass
class ComparatorState:
    """Per-architecture leaf masks and subnet keys of a population."""

    proj: Projections
    keys: np.ndarray

    def take(self, index: np.ndarray) -> "ComparatorState":
        return ComparatorState(self.proj.take(index), self.keys[index])

    @staticmethod
    def concat(states: Sequence["ComparatorState"]) -> "ComparatorState":
        return ComparatorState(Projections.concat([s.proj for s in states]), np.concatenate([s.keys for s in states]))


class ComparatorRanker:
    """QuickSelect driven by the (compiled) comparator; counts comparator calls (one per pair)."""

    def __init__(self, space: OFASpace, comparator: Comparator, three_way: bool = True):
        self.space, self.comparator, self.calls = space, comparator, 0
        self.trees = comparator.compiled
        self._symmetric = comparator.config.symmetric
        self.three_way = three_way
        self.partition_steps = 0

    def prepare(self, genomes: np.ndarray, known: ComparatorState | None = None) -> ComparatorState:
        """Masks and keys of ``genomes``; subnets already in ``known`` (or repeated) are not recomputed.

        Late in an evolution many children equal a parent (a mutation of inactive genes, a
        crossover of equal parents), so their masks are copied instead of computed.
        """
        keys = genome_keys(self.space, genomes)
        uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        source = np.full(len(uniq), -1, dtype=np.int64)
        if known is not None and len(known.keys):
            order = np.argsort(known.keys)
            pos = np.minimum(np.searchsorted(known.keys[order], uniq), len(order) - 1)
            hit = known.keys[order[pos]] == uniq
            source[hit] = order[pos[hit]]
        new = source < 0
        fresh = self.comparator.project(self.space.encode_genomes(genomes[first[new]]))
        words_first = np.empty((len(uniq), fresh.first.shape[1]), dtype=fresh.first.dtype)
        words_second = np.empty_like(words_first)
        words_first[new], words_second[new] = fresh.first, fresh.second
        if not new.all():
            words_first[~new], words_second[~new] = known.proj.first[source[~new]], known.proj.second[source[~new]]
        inverse = inverse.reshape(-1)
        return ComparatorState(Projections(words_first[inverse], words_second[inverse]), keys)

    def take(self, state: ComparatorState, index: np.ndarray) -> ComparatorState:
        return state.take(index)

    def concat(self, states: Sequence[ComparatorState]) -> ComparatorState:
        return ComparatorState.concat(states)

    def _margins_to_pivot(self, state: ComparatorState, others: np.ndarray, pivot: int) -> np.ndarray:
        p = state.proj
        margin = self.trees.sum_values(p.first[others] & p.second[pivot])
        if self._symmetric:
            margin -= self.trees.sum_values(p.first[pivot] & p.second[others])
        return margin

    def _compare_to_pivot(self, state: Any, others: np.ndarray, pivot: int) -> np.ndarray:
        self.partition_steps += 1
        better = np.where(self._margins_to_pivot(state, others, pivot) > 0, 1, -1)
        if not self.three_way:  # the straightforward two-way partition (copies of the pivot go below)
            return better
        return np.where(state.keys[others] == state.keys[pivot], 0, better)

    def top(self, state: ComparatorState, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
        top, calls = quickselect_top(n, k, lambda o, p: self._compare_to_pivot(state, o, p), rng)
        self.calls += calls
        return top

    def order(self, state: ComparatorState, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``index`` ordered by Copeland score (wins among themselves); returns (index, win rate)."""
        m = len(index)
        if m < 2:
            return index, np.ones(m)
        i, j = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
        sub = state.take(index)
        wins = self.comparator.better(sub.proj, i.ravel(), j.ravel()).reshape(m, m)
        np.fill_diagonal(wins, False)
        score = wins.sum(axis=1) / (m - 1)
        order = np.argsort(-score, kind="stable")
        return index[order], score[order]


@dataclasses.dataclass
class EncodingState:
    """Encodings and subnet keys of a population (for :class:`LightGBMRanker`)."""

    enc: np.ndarray
    keys: np.ndarray

    def take(self, index: np.ndarray) -> "EncodingState":
        return EncodingState(self.enc[index], self.keys[index])


class LightGBMRanker(ComparatorRanker):
    """The same QuickSelect, but every partition step calls LightGBM's own ``predict`` on the pairs.

    The straightforward implementation (the issue's ~9.7 s anchor); kept as the reference the
    compiled comparator must agree with, and for the benchmark.
    """

    def __init__(self, space: OFASpace, comparator: Comparator, three_way: bool = True):
        super().__init__(space, comparator, three_way)
        from facenas.adapters.gbdt import load_booster

        self.booster = load_booster(comparator.model_text)

    def prepare(self, genomes: np.ndarray, known: Any = None) -> EncodingState:  # type: ignore[override]
        return EncodingState(self.space.encode_genomes(genomes), genome_keys(self.space, genomes))

    def take(self, state: EncodingState, index: np.ndarray) -> EncodingState:  # type: ignore[override]
        return state.take(index)

    def concat(self, states: Sequence[EncodingState]) -> EncodingState:  # type: ignore[override]
        return EncodingState(np.concatenate([s.enc for s in states]), np.concatenate([s.keys for s in states]))

    def _margins_to_pivot(self, state: EncodingState, others: np.ndarray, pivot: int) -> np.ndarray:  # type: ignore[override]
        enc_o = state.enc[others]
        enc_p = np.broadcast_to(state.enc[pivot], enc_o.shape)
        margin = self.booster.predict(np.concatenate([enc_o, enc_p], axis=1), raw_score=True)
        if self._symmetric:
            margin = margin - self.booster.predict(np.concatenate([enc_p, enc_o], axis=1), raw_score=True)
        return margin

    def order(self, state: EncodingState, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        return ComparatorRanker.order(self, ComparatorState(self.comparator.project(state.enc), state.keys), index)


class PredictorRanker:
    """Rank by a regression predictor's accuracy (OFA's MLP): sort, as OFA's EvolutionFinder does."""

    def __init__(self, space: OFASpace, predictor: MLPPredictor):
        self.space, self.predictor, self.calls = space, predictor, 0

    def prepare(self, genomes: np.ndarray, known: Any = None) -> np.ndarray:
        self.calls += len(genomes)
        return self.predictor.predict(self.space.encode_genomes(genomes))

    def take(self, state: np.ndarray, index: np.ndarray) -> np.ndarray:
        return state[index]

    def concat(self, states: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate(states)

    def top(self, state: np.ndarray, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
        return np.argsort(-state, kind="stable")[:k]

    def order(self, state: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(-state[index], kind="stable")
        return index[order], state[index][order]


# -- genome operators ------------------------------------------------------------------------------------
class GenomeSampler:
    """Random, mutated and crossed-over genomes within ``cost <= bound`` (bounded loops)."""

    def __init__(self, space: OFASpace, cost: AdditiveCost, bound: float, config: EvolutionConfig,
                 rng: np.random.Generator):
        self.space, self.cost, self.bound, self.config, self.rng = space, cost, float(bound), config, rng
        self.sizes = space.genome_layout.sizes
        self.stats = {"resampled": 0, "repaired": 0, "fallback_to_parent": 0}
        cost.check_feasible(self.bound)

    def feasible(self, genomes: np.ndarray) -> np.ndarray:
        return self.cost.of_genomes(genomes) <= self.bound + 1e-9

    def random(self, n: int) -> np.ndarray:
        out = self.space.random_genomes(self.rng, n)
        bad = ~self.feasible(out)
        for _ in range(self.config.max_resample_rounds):
            if not bad.any():
                break
            self.stats["resampled"] += int(bad.sum())
            out[bad] = self.space.random_genomes(self.rng, int(bad.sum()))
            bad = ~self.feasible(out)
        if bad.any():
            out[bad] = self._repair(out[bad])
        return out

    def _repair(self, genomes: np.ndarray) -> np.ndarray:
        """Move each genome gene by gene (random order) to the cheapest subnet until feasible."""
        self.stats["repaired"] += len(genomes)
        target = self.cost.cheapest_genome()
        out = genomes.copy()
        for col in self.rng.permutation(out.shape[1]):
            bad = ~self.feasible(out)
            if not bad.any():
                break
            out[bad, col] = target[col]
        bad = ~self.feasible(out)
        out[bad] = target  # only reachable through float round-off at the bound
        return out

    def _resample(self, draw, n: int, fallback: np.ndarray) -> np.ndarray:
        """``n`` feasible genomes: ``draw(rows)`` proposes candidates for the row indices still
        infeasible, for at most ``max_resample_rounds`` rounds; rows never feasible keep ``fallback``."""
        out = np.empty_like(fallback)
        todo = np.arange(n)
        for _ in range(self.config.max_resample_rounds):
            cand = draw(todo)
            ok = self.feasible(cand)
            out[todo[ok]] = cand[ok]
            todo = todo[~ok]
            if not len(todo):
                return out
            self.stats["resampled"] += len(todo)
        self.stats["fallback_to_parent"] += len(todo)
        out[todo] = fallback[todo]
        return out

    def mutate(self, parents: np.ndarray) -> np.ndarray:
        p = self.config.mutation_prob

        def draw(rows: np.ndarray) -> np.ndarray:
            mask = self.rng.random((len(rows), parents.shape[1])) < p
            return np.where(mask, self.space.random_genomes(self.rng, len(rows)), parents[rows])

        return self._resample(draw, len(parents), parents)

    def crossover(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        def draw(rows: np.ndarray) -> np.ndarray:
            pick = self.rng.random((len(rows), first.shape[1])) < 0.5
            return np.where(pick, first[rows], second[rows])

        return self._resample(draw, len(first), first)

    def children(self, parents: np.ndarray) -> np.ndarray:
        cfg = self.config
        P, M, K = cfg.population_size, cfg.num_mutations, len(parents)
        mutated = self.mutate(parents[self.rng.integers(K, size=M)])
        crossed = self.crossover(parents[self.rng.integers(K, size=P - M)], parents[self.rng.integers(K, size=P - M)])
        return np.concatenate([mutated, crossed])


# -- the search ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class SearchResult:
    """Outcome of one evolutionary search.

    Attributes:
        best: the chosen subnet (canonical sample).
        best_cost: its cost (``cost_name``).
        top: the top-k subnets, best first: ``{"sample", "cost", "score"}`` (score: predicted
            accuracy for a regressor, win rate among the top-k for the comparator).
        ranker: ``comparator`` / ``lightgbm`` / ``mlp``.
        comparator_calls: pairs compared (comparator rankers) or predictions (regressor).
        calls_per_generation: mean calls per generation (selection of the parents).
        seconds: wall time of the search.
        stats: resampling counters.
    """

    best: dict[str, Any]
    best_cost: float
    cost_name: str
    bound: float
    top: list[dict[str, Any]]
    ranker: str
    comparator_calls: int
    calls_per_generation: float
    max_calls_per_generation: int
    generations: int
    population_size: int
    seconds: float
    stats: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def evolution_search(space: OFASpace, ranker: Ranker, cost: AdditiveCost, bound: float,
                     config: EvolutionConfig | None = None, ranker_name: str = "comparator") -> SearchResult:
    """Algorithm 1: the best subnet with ``cost <= bound`` according to ``ranker``."""
    config = config or EvolutionConfig()
    config.validate("evolution config")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=config.threads):
        return _evolution_search(space, ranker, cost, bound, config, ranker_name)


def _evolution_search(space: OFASpace, ranker: Ranker, cost: AdditiveCost, bound: float, config: EvolutionConfig,
                      ranker_name: str) -> SearchResult:
    t0 = time.perf_counter()
    rng = make_rng(config.seed)
    sampler = GenomeSampler(space, cost, bound, config, rng)
    K = config.num_parents
    genomes = sampler.random(config.population_size)  # lines 1-10
    state = ranker.prepare(genomes)
    calls_before = ranker.calls
    per_gen: list[int] = []
    for _ in range(config.generations):  # lines 11-19
        before = ranker.calls
        top = ranker.top(state, len(genomes), K, rng)
        per_gen.append(ranker.calls - before)
        parents, parent_state = genomes[top], ranker.take(state, top)
        children = sampler.children(parents)
        child_state = ranker.prepare(children, parent_state)
        if config.keep_parents:
            genomes = np.concatenate([parents, children])
            state = ranker.concat([parent_state, child_state])
        else:
            genomes, state = children, child_state
    # line 20: top-1 by QuickSelect; then the next distinct subnets for the report (best first)
    best = int(ranker.top(state, len(genomes), 1, rng)[0])
    canon = space.canonical_genomes(genomes)
    _, first = np.unique(canon, axis=0, return_index=True)
    rest = np.sort(first)
    rest = rest[~(canon[rest] == canon[best]).all(axis=1)]
    n_rest = min(config.top_k - 1, len(rest))
    if n_rest:
        rest = rest[ranker.top(ranker.take(state, rest), len(rest), n_rest, rng)]
    else:
        rest = rest[:0]
    ordered, scores = ranker.order(state, np.concatenate([[best], rest]).astype(np.int64))
    front = int(np.flatnonzero(ordered == best)[0])
    order = [front] + [i for i in range(len(ordered)) if i != front]
    ordered, scores = ordered[order], scores[order]
    costs = cost.of_genomes(genomes[ordered])
    top_list = [{"sample": space.sample_from_genome(canon[i]), "cost": float(c), "score": float(s)}
                for i, c, s in zip(ordered, costs, scores)]
    calls = ranker.calls - calls_before
    result = SearchResult(
        best=top_list[0]["sample"], best_cost=top_list[0]["cost"], cost_name=cost.name, bound=float(bound),
        top=top_list, ranker=ranker_name, comparator_calls=int(calls),
        calls_per_generation=float(np.mean(per_gen)) if per_gen else 0.0,
        max_calls_per_generation=int(max(per_gen)) if per_gen else 0, generations=config.generations,
        population_size=config.population_size, seconds=time.perf_counter() - t0,
        stats={**sampler.stats, "partition_steps": int(getattr(ranker, "partition_steps", 0))})
    log.info("search (%s, %s <= %g): best %s at %.4g, %d calls (%.0f per generation), %.2f s", ranker_name,
             cost.name, bound, space.describe_arch(result.best), result.best_cost, calls, result.calls_per_generation,
             result.seconds)
    return result


RANKERS = ("comparator", "lightgbm", "lightgbm_two_way", "mlp")


def make_ranker(kind: str, space: OFASpace, predictor: Comparator | MLPPredictor) -> Ranker:
    """A ranker by name.

    ``comparator``: QuickSelect (three-way partition) with the compiled comparator -- the default;
    ``lightgbm``: the same with LightGBM's own ``predict`` per partition step (reference);
    ``lightgbm_two_way``: the straightforward loop -- LightGBM ``predict`` per step, two-way
    partition (copies of the pivot are not split off); ``mlp``: OFA's MLP predictor, sorting.
    """
    if kind in ("comparator", "lightgbm", "lightgbm_two_way") and not isinstance(predictor, Comparator):
        raise ConfigError(f"ranker '{kind}' needs a Comparator, got {type(predictor).__name__}")
    if kind == "comparator":
        return ComparatorRanker(space, predictor)  # type: ignore[arg-type]
    if kind == "lightgbm":
        return LightGBMRanker(space, predictor)  # type: ignore[arg-type]
    if kind == "lightgbm_two_way":
        return LightGBMRanker(space, predictor, three_way=False)  # type: ignore[arg-type]
    if kind == "mlp":
        if not isinstance(predictor, MLPPredictor):
            raise ConfigError("ranker 'mlp' needs an MLPPredictor")
        return PredictorRanker(space, predictor)
    raise ConfigError(f"ranker '{kind}' is not one of {list(RANKERS)}")


# -- ask/tell form --------------------------------------------------------------------------------------
class OFAEvolutionStrategy(Strategy):
    """Algorithm 1's evolution as an ask/tell strategy whose fitness is a measured metric.

    Each generation proposes ``population_size`` subnets within the cost bound (the first: random;
    later: mutations and crossovers of the top ``K`` evaluated so far, as in :func:`evolution_search`);
    ``tell`` records their metrics (``default`` is maximised). Used by multi-trial runs, e.g. NNI
    trials that evaluate subnets of a trained supernet. Stops after ``generations`` generations.

    Args:
        space: an OFA space.
        seed: generator seed.
        generations, population_size, parent_ratio, mutation_ratio, mutation_prob: Algorithm 1's.
        max_mflops: FLOPs bound (None: no bound).
        latency_table: a table file of ``facenas lut build`` (or an in-line ``{block key: ms}``) and
            ``max_latency_ms``: a bound on the predicted latency instead.
    """

    name = "ofa_evolution"

    def __init__(self, space: OFASpace, seed: int = 0, generations: int = 10, population_size: int = 20,
                 parent_ratio: float = 0.25, mutation_ratio: float = 0.5, mutation_prob: float = 0.1,
                 max_mflops: float | None = None, latency_table: Mapping[str, float] | str | None = None,
                 max_latency_ms: float | None = None):
        super().__init__(space, seed)
        if not isinstance(space, OFASpace):
            raise ConfigError(f"ofa_evolution needs an OFA space, got '{space.name}'")
        self.config = EvolutionConfig(generations=generations, population_size=population_size,
                                      parent_ratio=parent_ratio, mutation_ratio=mutation_ratio,
                                      mutation_prob=mutation_prob, seed=seed)
        self.config.validate("ofa_evolution")
        if latency_table is not None and max_latency_ms is not None:
            self.cost, self.bound = AdditiveCost.latency(space, latency_table), float(max_latency_ms)
        else:
            self.cost = AdditiveCost.flops(space)
            self.bound = float(max_mflops) if max_mflops is not None else self.cost.maximum()
        self.generation = 0
        self.pending: list[list[int]] = []

    def _sampler(self) -> GenomeSampler:
        return GenomeSampler(self.space, self.cost, self.bound, self.config, self.rng)  # type: ignore[arg-type]

    def _next_generation(self) -> None:
        sampler = self._sampler()
        if self.generation == 0:
            genomes = sampler.random(self.config.population_size)
        else:
            scored = [(m.get("default", -math.inf), s) for s, m in self.history]
            scored.sort(key=lambda t: -t[0])
            parents = np.array([self.space.genome(s) for _, s in scored[:self.config.num_parents]])  # type: ignore[attr-defined]
            genomes = sampler.children(parents)
        self.pending = [list(map(int, g)) for g in genomes]
        self.generation += 1

    def ask(self) -> Sample:
        if not self.pending:
            if self.generation >= self.config.generations:
                raise SearchExhausted(f"ofa_evolution: {self.config.generations} generations done")
            self._next_generation()
        return self.space.sample_from_genome(self.pending.pop(0))  # type: ignore[attr-defined]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "generation": self.generation, "pending": [list(g) for g in self.pending]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.generation = int(state["generation"])
        self.pending = [list(g) for g in state["pending"]]


@STRATEGIES.register("ofa_evolution")
def ofa_evolution(space: OFASpace, **kwargs: Any) -> OFAEvolutionStrategy:
    return OFAEvolutionStrategy(space, **kwargs)
