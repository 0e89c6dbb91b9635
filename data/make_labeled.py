#!/usr/bin/env python3
"""Rebuild data/labeled/domain.jsonl.gz from ../shared/corpora: the seed set the classifiers train on.

Usage: python3 data/make_labeled.py [--corpora ../shared/corpora] [--per-domain 500] [--chars 3000]

Each record: {"id", "text", "domain", "lang", "family", "source", "license"}. `domain` is the source's
label (code, techdocs, literature, reference, legal); multilingual records keep theirs (techdocs or
literature in fr/de/es). Texts are the first --chars characters of the document, cut at a line end.

`family` groups the records that must fall on the same side of a train/held-out split:
- a chunked file (`...#N`): the file, so every chunk of one file goes together;
- a KJV chapter (`literature/kjv/Ge 1`): its book;
- a dictionary entry (`reference/gcide#N`, foldoc, wordnet): a block of 200 neighbouring entries,
  since the whole dictionary is one source file and would otherwise be one family.
Records are picked per domain round-robin over sources, then families, in a seeded order, so every
source and language appears; at most 5 records per family so no one file dominates.
"""
import argparse
import gzip
import json
import random
import re
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
DICTIONARIES = ("reference/gcide#", "reference/foldoc#", "reference/wordnet#")


def family_of(rec_id: str) -> str:
    if rec_id.startswith(DICTIONARIES):
        head, n = rec_id.split("#", 1)
        return f"{head}/block{int(n) // 200}"
    if rec_id.startswith("literature/kjv/"):
        return re.sub(r"\s+\d+$", "", rec_id)
    return rec_id.split("#", 1)[0]


def head(text: str, chars: int) -> str:
    if len(text) <= chars:
        return text
    cut = text.rfind("\n", 0, chars)
    return text[: cut if cut > chars // 2 else chars]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpora", default=str(HERE.parent.parent / "shared" / "corpora"))
    ap.add_argument("--per-domain", type=int, default=500)
    ap.add_argument("--per-family", type=int, default=5)
    ap.add_argument("--chars", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    # domain -> (source, lang) -> family -> records
    pools: dict[str, dict[str, dict[str, list[dict]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for src in sorted(Path(args.corpora).glob("*.jsonl.gz")):
        with gzip.open(src, "rt", encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                if len(rec["text"].strip()) < 50:
                    continue
                fam = family_of(rec["id"])
                pools[rec["domain"]][f"{rec['source']}:{rec['lang']}"][fam].append(rec)
    rng = random.Random(args.seed)
    out = []
    for domain in sorted(pools):
        queues = []
        for source in sorted(pools[domain]):
            fams = pools[domain][source]
            order = sorted(fams)
            rng.shuffle(order)
            picks = []
            for fam in order:
                recs = fams[fam]
                picks.extend(rng.sample(recs, min(args.per_family, len(recs))))
            rng.shuffle(picks)
            queues.append(picks)
        taken = 0
        while taken < args.per_domain and any(queues):
            for q in queues:
                if q and taken < args.per_domain:
                    rec = q.pop()
                    out.append({"id": rec["id"], "text": head(rec["text"], args.chars), "domain": domain,
                                "lang": rec["lang"], "family": family_of(rec["id"]), "source": rec["source"],
                                "license": rec["license"]})
                    taken += 1
        print(f"{domain}: {taken} records from {len(pools[domain])} sources")
    out.sort(key=lambda r: (r["domain"], r["id"]))
    dest = HERE / "labeled" / "domain.jsonl.gz"
    dest.parent.mkdir(exist_ok=True)
    body = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in out)
    with open(dest, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(body.encode("utf-8"))
    print(f"{dest}: {len(out)} records, {sum(len(r['text']) for r in out):,} chars, "
          f"{len({r['family'] for r in out})} families")


if __name__ == "__main__":
    main()
