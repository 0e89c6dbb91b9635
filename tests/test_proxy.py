"""Proxy training and learned mixtures on real curated text: determinism, exact resumption, the learned
manifest, the comparison, and the bad inputs the issue names."""
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import curate.flows.proxy  # noqa: F401  (Prefect sets up its log handlers on import: on the real stdout, not CliRunner's)
from curate.flows.cli import app
from curate.schemas.config import MixConfig
from curate.schemas.proxy import LearnConfig, ProxyConfig
from curate.tasks.learn.mixtures import compare_mixtures, learn_mixture, run_dir
from curate.tasks.train.loader import MixtureDataset
from curate.tasks.mix.manifest import build_manifest, collect_shards, write_version
from curate.tasks.train.manifests import load_manifest
from curate.tasks.learn.updates import loss_softmax
from curate.tasks.learn.batches import ProxyError
from curate.tasks.learn.proxy import train_proxy
from tests.test_shards_manifest import curate_sample

TINY = ProxyConfig(n_layer=1, n_head=2, n_embd=32, seq_len=64, batch_size=4, steps=8, warmup_steps=2,
                   eval_interval=4, checkpoint_interval=4, eval_blocks=4, threads=1)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("proxy")
    tok, _, _ = curate_sample(root)
    shards = collect_shards(root)
    natural = write_version(root, build_manifest(shards, tok, MixConfig(sequence_length=64), "cfg", 1))[0]
    uniform = write_version(root, build_manifest(shards, tok, MixConfig(method="uniform", sequence_length=64),
                                                 "cfg", 2))[0]
    return root, tok, shards, natural, uniform


def test_training_is_deterministic_and_reports_every_domain(work):
    root, tok, _, natural, _ = work
    first = train_proxy(natural, TINY)
    domains = [s.domain for s in load_manifest(natural).sources]
    assert sorted(first.final_losses) == sorted(domains) and [h.step for h in first.history] == [4, 8]
    assert first.average_loss < np.log(tok.vocab_size), "it learned something"
    weights = torch.load(run_dir(first) / "checkpoint.pt", weights_only=False)["model"]
    shutil.rmtree(run_dir(first))
    again = train_proxy(natural, TINY)
    assert again.final_losses == first.final_losses and again.history == first.history
    weights_again = torch.load(run_dir(again) / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(weights[k], weights_again[k]) for k in weights)
    assert train_proxy(natural, TINY).seconds == again.seconds, "a finished run is returned, not retrained"


def test_an_interrupted_run_resumes_to_the_same_result(work):
    _, _, _, natural, _ = work
    cfg = TINY.model_copy(update={"seed": 5})
    whole = train_proxy(natural, cfg)
    shutil.rmtree(run_dir(whole))

    def crash(step, steps, message):
        if step == 6:
            raise KeyboardInterrupt  # after the checkpoint at step 4
    with pytest.raises(KeyboardInterrupt):
        train_proxy(natural, cfg, progress=crash)
    resumed = train_proxy(natural, cfg)
    assert resumed.resumed_from_step == 4
    assert resumed.final_losses == whole.final_losses and resumed.history == whole.history


def test_doremi_writes_a_new_manifest_version_with_its_provenance(work):
    root, _, _, natural, _ = work
    runs, path, new = learn_mixture(natural, TINY, LearnConfig(method="doremi"))
    assert new and [r.role for r in runs] == ["baseline", "doremi"]
    m, ref = load_manifest(path), load_manifest(natural)
    assert m.version > ref.version and m.weights_provenance.method == "doremi"
    assert m.weights_provenance.proxy_run_id == runs[1].run_id and m.weights_provenance.reference_manifest == ref.id
    assert m.weights_provenance.parameters["reference_run_id"] == runs[0].run_id
    assert [s.shards for s in m.sources] == [s.shards for s in ref.sources], "same shards, new weights"
    assert m.budget == ref.budget and abs(sum(s.weight for s in m.sources) - 1) < 1e-6
    learned = runs[1].learned_weights
    alphas = [h.weights for h in runs[1].history]
    assert len({tuple(a.values()) for a in alphas}) > 1, "alpha moved during training"
    assert all(abs(m_w.weight - learned[m_w.domain]) < 0.02 or "capped" in " ".join(m.warnings) for m_w in m.sources)
    assert next(iter(MixtureDataset(path, seq_len=64)))["input_ids"].shape == (64,)
    assert (run_dir(runs[1]) / "curves.png").stat().st_size > 10_000
    again = learn_mixture(natural, TINY, LearnConfig(method="doremi"))
    assert again[1] == path and not again[2], "the same learning again writes no new version"


def test_loss_softmax_sets_weights_to_the_softmax_of_held_out_losses(work):
    _, _, _, natural, _ = work
    runs, path, _ = learn_mixture(natural, TINY, LearnConfig(method="loss-softmax", tau=1.0))
    r = runs[0]
    names = list(r.final_losses)
    expected = loss_softmax(np.array([r.final_losses[d] for d in names]), 1.0)
    assert np.allclose([r.learned_weights[d] for d in names], expected)
    first_update = loss_softmax(np.array([r.history[0].losses[d] for d in names]))
    assert np.allclose([r.history[0].weights[d] for d in names], first_update), "sampling follows each update"
    assert load_manifest(path).weights_provenance.method == "loss-softmax"


def test_a_collapsing_weight_vector_is_warned_and_smoothed(work):
    _, _, _, natural, _ = work
    runs, _, _ = learn_mixture(natural, TINY, LearnConfig(method="loss-softmax", tau=1e-6))
    r = runs[0]
    assert r.warnings and "collapsed onto" in r.warnings[0]
    assert max(r.learned_weights.values()) < 0.95 and min(r.learned_weights.values()) > 0.01


def test_compare_trains_fresh_proxies_per_manifest_and_seed_and_reports_the_spread(work):
    _, _, _, natural, uniform = work
    result, out = compare_mixtures([natural, uniform], TINY, seeds=2)
    assert [r.method for r in result.rows] == ["natural", "uniform"] and result.seeds == [TINY.seed, TINY.seed + 1]
    for row in result.rows:
        assert len(row.run_ids) == len(set(row.run_ids)) == 2 and len(row.losses_by_seed) == 2
        for d, mean in row.losses.items():
            assert mean == pytest.approx(np.mean([s[d] for s in row.losses_by_seed]), abs=1e-6)
            assert row.spread[d] == pytest.approx(np.std([s[d] for s in row.losses_by_seed], ddof=1), abs=1e-6)
        assert row.average_loss == pytest.approx(np.mean(list(row.losses.values())), abs=1e-6)
        assert row.worst_loss == pytest.approx(np.mean([max(s.values()) for s in row.losses_by_seed]), abs=1e-6)
        assert row.losses_by_seed[0] != row.losses_by_seed[1]  # another seed, another initialisation and order
        assert row.average_spread > 0
    best = min(result.rows, key=lambda r: r.average_loss)
    assert not best.average_within_noise_of_best  # never "within the noise" of itself
    other = next(r for r in result.rows if r is not best)
    assert other.average_within_noise_of_best == (
        other.average_loss - best.average_loss < max(other.average_spread, best.average_spread))
    assert (out / "compare.json").is_file() and (out / "compare.png").is_file()
    one, _ = compare_mixtures([natural], TINY, seeds=1)  # the seed's runs are reused, not retrained
    assert one.rows[0].losses_by_seed[0] == result.rows[0].losses_by_seed[0] and one.rows[0].average_spread == 0


def _manifest_without(root, tok, shards, version, drop):
    kept = [s for s in shards if not drop(s)]
    return write_version(root, build_manifest(kept, tok, MixConfig(sequence_length=64, name=f"bad{version}"), "c", 1))[0]


@pytest.mark.server  # the CLI starts its temporary server while it checks
def test_bad_inputs_are_clear_messages_before_training(work):
    root, tok, shards, natural, _ = work
    no_val = _manifest_without(root, tok, shards, 1, lambda s: s.split == "validation")
    with pytest.raises(ProxyError, match="no validation shards"):
        train_proxy(no_val, TINY)
    no_legal = _manifest_without(root, tok, shards, 2, lambda s: s.split == "validation" and s.domain == "legal")
    with pytest.raises(ProxyError, match="legal have no validation shards"):
        train_proxy(no_legal, TINY)
    with pytest.raises(ProxyError, match="hold out different validation shards"):
        compare_mixtures([natural, no_legal], TINY)
    with pytest.raises(ProxyError, match="lower --steps"):
        train_proxy(natural, TINY.model_copy(update={"steps": 5000, "eval_interval": 5000}))
    ref = train_proxy(natural, TINY)
    forged = run_dir(ref).parent / "forged-reference"
    shutil.copytree(run_dir(ref), forged, dirs_exist_ok=True)
    ckpt = torch.load(forged / "checkpoint.pt", weights_only=False)
    ckpt["tokenizer_sha256"] = "0" * 64
    torch.save(ckpt, forged / "checkpoint.pt")
    with pytest.raises(ProxyError, match="tokenizer mismatch"):
        train_proxy(natural, TINY, "doremi", reference_run=forged)
    res = CliRunner().invoke(app, ["train", "--manifest", str(no_val), "--steps", "2"])
    assert res.exit_code == 2 and "no validation shards" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["learn-mixture", "--manifest", str(natural), "--method", "bogus"])
    assert res.exit_code == 2 and "learn.method" in res.output and "Traceback" not in res.output


@pytest.mark.server
def test_learn_mixture_flow_publishes_weights_losses_and_the_plot(prefect_harness, work):
    import asyncio

    from prefect.client.orchestration import get_client

    from curate.flows.proxy import learn_mixture_flow
    from tests.test_flow import _artifacts

    out = learn_mixture_flow(str(work[3]), proxy=TINY.model_dump(), learn={"method": "doremi"})
    assert abs(sum(out["learned_weights"].values()) - 1) < 1e-9

    async def latest_run_id():
        async with get_client() as client:
            runs = await client.read_flow_runs(limit=1, sort="START_TIME_DESC")
        return str(runs[0].id)
    arts = asyncio.run(_artifacts(asyncio.run(latest_run_id())))
    assert {"learn-mixture-weights", "learn-mixture-doremi-summary", "learn-mixture-doremi-losses",
            "learn-mixture-baseline-summary", "learn-mixture-progress"} <= set(arts)
    assert "data:image/png;base64," in arts["learn-mixture-doremi-summary"]["data"]


def test_regmix_fits_runs_on_random_mixtures_and_writes_the_predicted_best(work):
    from curate.tasks.train.manifests import load_manifest

    _, _, _, natural, _ = work
    learn = LearnConfig(method="regmix", regmix_runs=6, regmix_candidates=2000, regmix_top=20)
    runs, path, new = learn_mixture(natural, TINY, learn, workers=2)
    assert new and len(runs) == 6 and len({r.run_id for r in runs}) == 6
    assert len({tuple(r.final_losses.values()) for r in runs}) == 6  # each run its own mixture
    m = load_manifest(path)
    assert m.weights_provenance.method == "regmix" and abs(sum(s.weight for s in m.sources) - 1) < 1e-6
    p = m.weights_provenance.parameters
    assert p["runs"] == [r.run_id for r in runs] and p["fit_on_held_out_runs"]["held_out_runs"] == 2
    assert set(p["fit_on_held_out_runs"]["r2_per_domain"]) == {s.domain for s in m.sources}
    again = learn_mixture(natural, TINY, learn, workers=1)  # the same runs, reused; the same weights
    assert not again[2] and again[1] == path


def test_a_folder_trains_its_newest_version_even_when_the_latest_pointer_lags(work):
    """`latest.json` is a pointer the next write repairs; a run killed between a version and its pointer leaves it one
    behind. The proxy, like `curate inspect` and the loader, takes the folder's newest version file, never a path read
    from the pointer (which once trained v0001 where inspect showed v0002)."""
    import json

    from curate.tasks.learn.proxy import preflight

    root, _, _, natural, uniform = work
    folder = root / "manifests" / "lagging"
    folder.mkdir()
    shutil.copy(natural, folder / "v0001.json")
    shutil.copy(uniform, folder / "v0002.json")
    (folder / "latest.json").write_text(json.dumps({"version": 1, "path": "v0001.json", "fingerprint": "lagging"}))
    path, m, _ = preflight(folder, TINY)
    assert path.name == "v0002.json" and m.weights_provenance.method == "uniform"
