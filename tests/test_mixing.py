"""Weight strategies and budget allocation: invariants that hold for any input."""
import math

import pytest

from curate.tasks.mix.weights import MixError, allocate, largest_remainder, manual, natural, temperature, unimax

AVAILABLE = {"code": 400_000, "legal": 20_000, "literature": 150_000, "reference": 300_000, "techdocs": 130_000}


@pytest.mark.parametrize("weights", [natural(AVAILABLE), temperature(AVAILABLE, 0.3), unimax(AVAILABLE, 800_000, 4)])
def test_weights_are_a_distribution(weights):
    assert math.isclose(sum(weights.values()), 1.0) and all(w >= 0 for w in weights.values())
    assert set(weights) == set(AVAILABLE)


def test_natural_follows_tokens_and_temperature_flattens_it():
    nat, flat = natural(AVAILABLE), temperature(AVAILABLE, 0.3)
    assert nat["code"] == pytest.approx(0.4)
    assert temperature(AVAILABLE, 1.0) == pytest.approx(nat)
    assert flat["legal"] > nat["legal"] and flat["code"] < nat["code"]  # small domains up, large down


def test_unimax_is_uniform_until_a_domain_runs_out_of_epochs():
    w = unimax(AVAILABLE, 500_000, max_epochs=4)
    assert w["legal"] == pytest.approx(0.16)  # 4 epochs of 20k tokens, not a fifth of 500k
    assert len({round(v, 9) for d, v in w.items() if d != "legal"}) == 1  # the rest share the surplus evenly


@pytest.mark.parametrize("total", [1, 7, 999, 1_000_003])
def test_largest_remainder_sums_exactly(total):
    parts = largest_remainder(natural(AVAILABLE), total)
    assert sum(parts.values()) == total
    assert all(abs(parts[d] - w * total) < 1 for d, w in natural(AVAILABLE).items())


def test_allocation_epochs_and_the_max_epochs_rule():
    alloc = allocate(natural(AVAILABLE), AVAILABLE, 2_000_000, max_epochs=4)
    assert sum(alloc.targets.values()) == 2_000_000
    assert alloc.epochs["code"] == pytest.approx(2.0)
    heavy = {"code": 0.2, "legal": 0.5, "literature": 0.1, "reference": 0.1, "techdocs": 0.1}
    with pytest.raises(MixError, match=r"domain 'legal' would need 25.00 epochs"):
        allocate(heavy, AVAILABLE, 1_000_000, max_epochs=4)
    capped = allocate(heavy, AVAILABLE, 1_000_000, max_epochs=4, cap=True)
    assert capped.targets["legal"] == 80_000 and sum(capped.targets.values()) == 1_000_000
    assert all(e <= 4 for e in capped.epochs.values()) and capped.warnings


def test_bad_weights_are_errors_naming_the_problem():
    with pytest.raises(MixError, match="sum to 0.900000"):
        manual({"code": 0.5, "legal": 0.4}, AVAILABLE)
    with pytest.raises(MixError, match=r"no shards: \['web'\]"):
        manual({"web": 1.0}, AVAILABLE)
    with pytest.raises(MixError, match=r"domain 'web' has weight"):
        allocate({"web": 0.5, "code": 0.5}, {"web": 0, "code": 10}, 10, 4)
