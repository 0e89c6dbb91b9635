#!/usr/bin/env python3
"""A near-duplicate set with ground truth in Chinese and Japanese, made the way ../shared/bench/make_neardups.py makes
the English one, with the edits that text written without spaces gets: characters replaced, inserted or deleted
inside clauses, a clause dropped, full-width and half-width punctuation swapped, the text re-wrapped at a fixed
width (as mail and plain-text archives do), truncation and a boilerplate header and footer.

Usage: python tests/benchmarks/make_cjk_neardups.py OUT_DIR [--langs zh,ja] [--dup-frac 0.8] [--seed 7] [--repeat 1]

--repeat K makes K rounds over the pages (a round after the first starts from a lightly edited copy of each page,
ids prefixed r1/, r2/ ...): a larger set for throughput; its pairs are listed within each round's families.

Writes OUT_DIR/docs.jsonl.gz ({"id", "text", "domain"}) and OUT_DIR/pairs.jsonl ({"a", "b", "jaccard"} for every
same-family pair): the true Jaccard of the two texts' sets of character 5-grams (5-grams of words.tokens, where a
Han or Kana letter is a token: the shingles the issue measures by).
"""
from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import random
from pathlib import Path

from curate.tasks.text.words import tokens

DATA = Path(__file__).resolve().parents[2] / "data" / "multilingual"
FILLER = {"zh": "的了是在和有这个们中大上为地说", "ja": "のにはをたがでてとしいるあうもな"}
BOILER = {
    "zh": ["首页 | 关于我们 | 联系方式 | 隐私政策", "版权所有 © 保留所有权利。订阅我们的新闻。", "分享到：微博 微信 QQ空间"],
    "ja": ["ホーム | 会社概要 | お問い合わせ | プライバシー", "著作権所有 © 無断転載を禁じます。", "シェア：ツイート いいね"],
}
PUNCT = str.maketrans("，。：；！？（）", ",.:;!?()")


def shingles(text: str, n: int = 5) -> set[str]:
    toks = tokens(text)
    if len(toks) < n:
        return {" ".join(toks)}
    return {" ".join(toks[i:i + n]) for i in range(len(toks) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / max(1, len(a | b))


def edit(text: str, lang: str, rng: random.Random) -> str:
    chars = list(text)
    rate = rng.choice([0.002, 0.005, 0.01, 0.02, 0.05, 0.1])
    for i in rng.sample(range(len(chars)), k=max(1, int(len(chars) * rate))):
        op = rng.random()
        if op < 0.4:
            chars[i] = rng.choice(FILLER[lang])
        elif op < 0.7:
            chars[i] = ""
        else:
            chars[i] += rng.choice(FILLER[lang])
    out = "".join(chars)
    if rng.random() < 0.3:  # a clause dropped
        clauses = out.split("，")
        if len(clauses) > 2:
            del clauses[rng.randrange(len(clauses))]
            out = "，".join(clauses)
    if rng.random() < 0.3:
        out = out.translate(PUNCT)
    if rng.random() < 0.3:
        flat = out.replace("\n", "")
        out = "\n".join(flat[i:i + 36] for i in range(0, len(flat), 36))
    if rng.random() < 0.3:
        out = out[: int(len(out) * rng.uniform(0.8, 0.97))]
    if rng.random() < 0.3:
        out = rng.choice(BOILER[lang]) + "\n\n" + out + "\n\n" + rng.choice(BOILER[lang])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--langs", default="zh,ja")
    ap.add_argument("--dup-frac", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    docs, families = [], []
    for lang in args.langs.split(","):
        with gzip.open(DATA / f"{lang}.jsonl.gz", "rt", encoding="utf-8") as f:
            pages = [rec for rec in map(json.loads, f) if len(rec["text"]) >= 300]
        for rnd in range(args.repeat):
            for rec in pages:
                base = f"{lang}/{rec['id']}" if not rnd else f"r{rnd}/{lang}/{rec['id']}"
                text = rec["text"] if not rnd else edit(rec["text"], lang, rng)
                family = [(base, text)]
                if rng.random() < args.dup_frac:
                    family += [(f"{base}~dup{k}", edit(text, lang, rng)) for k in range(rng.choice([1, 1, 2, 3]))]
                docs += [{"id": i, "text": t, "domain": lang} for i, t in family]
                if len(family) > 1:
                    families.append(family)
    rng.shuffle(docs)
    os.makedirs(args.out, exist_ok=True)
    with gzip.open(os.path.join(args.out, "docs.jsonl.gz"), "wt", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    n_pairs = 0
    with open(os.path.join(args.out, "pairs.jsonl"), "w") as f:
        for family in families:
            sh = {fid: shingles(t) for fid, t in family}
            for (a, _), (b, _) in itertools.combinations(family, 2):
                f.write(json.dumps({"a": a, "b": b, "jaccard": round(jaccard(sh[a], sh[b]), 4)}) + "\n")
                n_pairs += 1
    print(f"{len(docs)} documents, {len(families)} families with copies, {n_pairs} same-family pairs")


if __name__ == "__main__":
    main()
