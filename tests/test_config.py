import pytest

from curate.schemas.config import ConfigError, CurateConfig, load_config, parse_config


def test_defaults_are_valid_and_documented():
    cfg = CurateConfig()
    assert cfg.ingest.text_field == "text" and cfg.ingest.id_field == "id"
    for name, field in CurateConfig.model_fields["ingest"].annotation.model_fields.items():
        assert field.description, f"ingest.{name} has no description"


def test_unknown_key_is_named():
    with pytest.raises(ConfigError) as err:
        parse_config({"ingest": {"txet_field": "body"}})
    assert "ingest.txet_field: unknown key" in str(err.value)


def test_bad_value_is_named():
    with pytest.raises(ConfigError) as err:
        parse_config({"ingest": {"batch_size": -3}, "runner": {"workers": "many"}})
    msg = str(err.value)
    assert "ingest.batch_size" in msg and "runner.workers" in msg


def test_empty_allowlist_is_refused():
    with pytest.raises(ConfigError, match="ingest.lang_allowlist"):
        parse_config({"ingest": {"lang_allowlist": []}})


def test_yaml_file_and_relative_corpus_paths(tmp_path):
    (tmp_path / "c.yaml").write_text("corpora:\n  - {name: books, path: data/books.jsonl}\ningest:\n  id_field: uid\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.ingest.id_field == "uid"
    assert cfg.corpora[0].path == str(tmp_path / "data" / "books.jsonl")


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("ingest: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")


def test_classify_rules_override_per_domain_and_unknown_pii_types_are_refused():
    cfg = parse_config({"classify": {"rules": {"code": [], "web": ["c4_curly_brace"]}}})
    assert cfg.classify.rules["code"] == [] and cfg.classify.rules["web"] == ["c4_curly_brace"]
    assert "gopher_word_count" in cfg.classify.rules["legal"]  # domains not named keep their defaults
    with pytest.raises(ConfigError, match=r"classify.pii: .*unknown PII types \['ssn'\]"):
        parse_config({"classify": {"pii": {"types": ["email", "ssn"]}}})
    with pytest.raises(ConfigError, match=r"classify.pii.mode"):
        parse_config({"classify": {"pii": {"mode": "mask"}}})
