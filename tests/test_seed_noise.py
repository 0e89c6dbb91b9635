"""Invariants of the noise arithmetic behind compare-mixtures (pure functions)."""
import math
import random

from tasks.seed_noise import mean_spread, seed_summary, within_noise


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
