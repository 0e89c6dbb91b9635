"""Invariants of the noise arithmetic behind compare-mixtures (pure functions)."""
import math
import random

from curate.tasks.learn.noise import mean_spread, ranks, seed_pair_spearman, seed_summary, spearman, within_noise


def test_mean_and_spread_are_the_sample_statistics():
    assert mean_spread([2.0]) == (2.0, 0.0)
    m, sd = mean_spread([1.0, 2.0, 3.0])
    assert m == 2.0 and math.isclose(sd, 1.0)
    rng = random.Random(1)
    xs = [rng.gauss(5, 2) for _ in range(50)]
    m, sd = mean_spread(xs)
    shifted = mean_spread([x + 10 for x in xs])
    assert math.isclose(shifted[0], m + 10) and math.isclose(shifted[1], sd)  # spread ignores a shift


def test_within_noise_is_symmetric_and_needs_a_spread():
    rng = random.Random(2)
    for _ in range(200):
        a, b = (rng.uniform(0, 5), rng.uniform(0, 1)), (rng.uniform(0, 5), rng.uniform(0, 1))
        assert within_noise(a, b) == within_noise(b, a)
    assert not within_noise((6.0, 0.0), (6.1, 0.0))  # one seed: nothing says a difference is noise
    assert within_noise((6.0, 0.2), (6.1, 0.0)) and not within_noise((6.0, 0.05), (6.3, 0.1))


def test_seed_summary_worst_is_per_seed_and_its_domain_the_highest_mean():
    seeds = [{"a": 7.0, "b": 6.0}, {"a": 6.0, "b": 6.8}]
    s = seed_summary(seeds)
    assert s["losses"] == {"a": 6.5, "b": 6.4} and s["worst_domain"] == "a"
    assert s["worst_loss"] == 6.9  # the mean of each seed's worst (7.0 and 6.8), not the worst of the means
    assert s["average_loss"] == 6.45 and s["average_spread"] == round(mean_spread([6.5, 6.4])[1], 6)


def test_spearman_invariants():
    rng = random.Random(3)
    for _ in range(200):
        n = rng.randint(3, 8)
        a = [rng.random() for _ in range(n)]
        b = [rng.random() for _ in range(n)]
        s = spearman(a, b)
        assert -1.0 - 1e-12 <= s <= 1.0 + 1e-12
        assert math.isclose(s, spearman(b, a))  # symmetric
        assert math.isclose(spearman(a, a), 1.0)
        assert math.isclose(spearman(a, [-x for x in a]), -1.0)
        assert math.isclose(spearman(a, [math.exp(3 * x) + 7 for x in a]), 1.0)  # only the order counts
    # one adjacent swap among five: 1 - 6 * 2 / (5 * 24) = 0.9; two: 0.8
    assert math.isclose(spearman([1, 2, 3, 4, 5], [2, 1, 3, 4, 5]), 0.9)
    assert math.isclose(spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]), 0.8)


def test_ties_share_their_rank_and_seed_pairs_are_all_pairs():
    assert ranks([0.5, 0.2, 0.5, 0.9]) == [2.5, 1.0, 2.5, 4.0]
    assert spearman([1, 1, 1], [1, 1, 1]) == 1.0 and spearman([1, 1, 1], [1, 2, 3]) == 0.0
    rows = [[7.0, 7.1, 6.9], [6.5, 6.6, 6.4], [6.8, 6.4, 6.7]]  # three mixtures, three seeds
    pairs = seed_pair_spearman(rows)
    assert len(pairs) == 3 and math.isclose(pairs[0], 0.5) and math.isclose(pairs[1], 1.0)  # one swap of three
