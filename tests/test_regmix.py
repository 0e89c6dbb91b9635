"""RegMix's pure parts: draws on the simplex around the natural mixture, the regression, the choice."""
import numpy as np

from curate.tasks.learn import regmix as regmix


def test_draws_are_mixtures_centred_on_the_natural_weights():
    natural = np.array([0.5, 0.3, 0.15, 0.05])
    x = regmix.sample_mixtures(natural, 20_000, 2.0, np.random.default_rng(0))
    assert np.allclose(x.sum(axis=1), 1) and (x > 0).all()
    assert np.allclose(x.mean(axis=0), natural, atol=0.01)
    tight = regmix.sample_mixtures(natural, 20_000, 50.0, np.random.default_rng(0))
    assert tight.std(axis=0).sum() < x.std(axis=0).sum()  # a larger concentration stays nearer


def test_the_regression_recovers_a_linear_map_and_the_choice_minimises_it():
    rng = np.random.default_rng(1)
    natural = np.full(3, 1 / 3)
    x = regmix.sample_mixtures(natural, 40, 1.0, rng)
    true = np.array([[3.0, 1.0], [1.0, 2.0], [2.0, 3.0]])  # loss of each domain (cols) per weight (rows)
    y = x @ true + 5.0
    coef = regmix.fit(x, y, l2=1e-9)
    assert np.allclose(regmix.predict(coef, x), y, atol=1e-4)
    held = np.zeros(40, dtype=bool)
    held[:10] = True
    q = regmix.fit_quality(x, y, held, "average", l2=1e-9)
    assert q["spearman_target"] > 0.99 and min(q["r2_per_domain"]) > 0.99
    chosen, predicted = regmix.best_mixture(coef, natural, "average", 5000, 10, 1.0, rng)
    assert abs(chosen.sum() - 1) < 1e-9 and chosen.argmax() == 1  # the second weight costs least on average
    assert predicted <= regmix.target(regmix.predict(coef, natural[None, :]), "average")[0]


def test_spearman_is_a_rank_correlation():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert regmix.spearman(a, a ** 3) == 1.0 and regmix.spearman(a, -a) == -1.0
    assert np.isnan(regmix.spearman(a, np.ones(4)))
