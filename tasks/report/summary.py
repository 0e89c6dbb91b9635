"""The run report as people read it: JSON on disk, a markdown summary and tables for Prefect artifacts."""
from __future__ import annotations

from pathlib import Path

from curate.schemas.report import ClassifyReport, RunReport
from curate.schemas.work_root import WorkRoot
from curate.tasks.engine.files import write_json_atomic


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f}"


def write_report(report: RunReport, work_root: Path) -> Path:
    """runs/<start>-<flow run>.json (every run's own, kept) and report.json (the latest run to complete) under the
    work root."""
    stamp = report.started_at.replace(":", "").replace("-", "") + (f"-{report.flow_run_id[:8]}" if report.flow_run_id
                                                                  else "")
    record = WorkRoot(work_root).run_record(stamp)
    report.run_record = WorkRoot(work_root).relative(record)
    data = report.model_dump(mode="json")
    write_json_atomic(record, data)
    path = WorkRoot(work_root).report()
    write_json_atomic(path, data)
    return path


def corpus_rows(report: RunReport) -> list[dict]:
    rows = []
    for c in report.corpora:
        rows.append(
            {"corpus": c.corpus, "files": c.files, "docs_in": c.docs_in, "kept": c.kept, "rejected": c.rejected,
             "text_MB": round(c.text_bytes / 1e6, 2), "balanced": c.balanced}
        )
    rows.append({"corpus": "TOTAL", "files": sum(c.files for c in report.corpora), "docs_in": report.docs_in,
                 "kept": report.kept, "rejected": report.rejected,
                 "text_MB": round(sum(c.text_bytes for c in report.corpora) / 1e6, 2), "balanced": report.balanced})
    return rows


def stage_rows(report: RunReport) -> list[dict]:
    """Per stage: wall time, documents and MB in, rates, parts reused."""
    return [{"stage": t.stage, "seconds": t.seconds, "docs_in": t.docs_in, "text_MB": t.mb_in,
             "docs_per_s": t.docs_per_s, "text_MB_per_s": t.mb_per_s, "parts": t.parts, "reused": t.parts_reused}
            for t in report.stage_times]


def reason_rows(report: RunReport) -> list[dict]:
    """Rejections by corpus and reason, most first."""
    rows = [
        {"corpus": c.corpus, "reason": reason, "count": n}
        for c in report.corpora
        for reason, n in c.by_reason.items()
    ]
    return sorted(rows, key=lambda r: (-r["count"], r["corpus"], r["reason"]))


def dedup_rows(report: RunReport) -> list[dict]:
    rows = []
    for c in report.corpora:
        d = c.dedup
        if d is None:
            continue
        rows.append({"corpus": c.corpus, "docs_in": d.docs_in, "kept": d.kept, "exact": d.exact_duplicates,
                     "near": d.near_duplicates, "clusters": sum(d.cluster_sizes.values()),
                     "cluster_sizes": ", ".join(f"{k}:{v}" for k, v in d.cluster_sizes.items()),
                     "largest (size kept_id)": "; ".join(f"{x['size']} {x['kept_id']}" for x in d.largest_clusters[:3])})
    return rows


def decontam_rows(report: RunReport) -> list[dict]:
    """Per corpus and evaluation set: documents rejected as contaminated."""
    return [{"corpus": c.corpus, "benchmark": name, "contaminated": n, "docs_in": c.decontam.docs_in}
            for c in report.corpora if c.decontam for name, n in (c.decontam.by_benchmark or {"(none)": 0}).items()]


# What classify's counts are grouped by: (documents seen, kept, rule -> dropped) fields of a ClassifyReport.
GROUPINGS = {"domain": ("docs_by_domain", "domains", "rule_drops"),
             "language": ("docs_by_lang", "kept_by_lang", "lang_rule_drops")}


def rule_drop_rows(cl: ClassifyReport, by: str = "domain") -> list[dict]:
    """Per predicted domain (or language), most documents first: documents seen and kept, what the rules dropped and
    at what rate (a high rate is a rule eating a domain, or thresholds wrong for a language), and which rules."""
    seen_f, kept_f, drops_f = GROUPINGS[by]
    seen, kept, all_drops = getattr(cl, seen_f), getattr(cl, kept_f), getattr(cl, drops_f)
    rows = []
    for key, n in sorted((seen or kept).items(), key=lambda kv: -kv[1]):
        drops = all_drops.get(key, {})
        rows.append({by: key, "docs": n, "kept": kept.get(key, 0), "rule_drops": sum(drops.values()),
                     "drop_rate": round(sum(drops.values()) / max(1, n), 3),
                     "by_rule": sorted(drops.items(), key=lambda kv: -kv[1])})
    return rows


def classify_rows(report: RunReport) -> list[dict]:
    """Per corpus and predicted domain: rule_drop_rows, and the corpus's share of `mixed` (unsure) documents."""
    return [{"corpus": c.corpus, **row, "by_rule": "; ".join(f"{r} {k}" for r, k in row["by_rule"]),
             "mixed_share_of_corpus": round(c.classify.mixed / max(1, c.classify.docs_in), 3),
             "pii_found": sum(c.classify.pii.values())}
            for c in report.corpora if c.classify is not None for row in rule_drop_rows(c.classify)]


def language_rows(report: RunReport) -> list[dict]:
    """Per corpus and language (ingest's language ID): documents classify judged and kept, and what the rules
    dropped, by rule."""
    return [{"corpus": c.corpus, **row, "by_rule": "; ".join(f"{r} {k}" for r, k in row["by_rule"])}
            for c in report.corpora if c.classify is not None for row in rule_drop_rows(c.classify, "language")]


def _bar(n: int, most: int, width: int = 30) -> str:
    return "█" * max(1 if n else 0, round(width * n / most)) if most else ""


def classify_markdown(report: RunReport) -> str:
    """Per corpus: kept documents per domain and the quality-score histogram, as text bar charts."""
    lines = ["# classify", ""]
    for c in report.corpora:
        cl = c.classify
        if cl is None:
            continue
        lines += [f"## {c.corpus}: {cl.docs_in:,} in, {cl.kept:,} kept", "", "```"]
        most = max(cl.domains.values(), default=0)
        lines += [f"{d:<12} {_bar(n, most)} {n:,}" for d, n in sorted(cl.domains.items(), key=lambda kv: -kv[1])]
        lines += ["", "quality score (all documents)"]
        most = max(cl.quality_hist, default=0)
        k = len(cl.quality_hist)
        lines += [f"{i / k:.1f}-{(i + 1) / k:.1f}  {_bar(n, most)} {n:,}" for i, n in enumerate(cl.quality_hist)]
        lines += ["```", ""]
        lines += [f"mixed (unsure of their domain): {cl.mixed:,} of {cl.docs_in:,} ({cl.mixed / max(1, cl.docs_in):.1%}); "
                  f"code-shaped and spared prose rules: {cl.code_shaped:,}", ""]
        for by, heading in (("domain", "predicted domain"), ("language", "language")):
            if not getattr(cl, GROUPINGS[by][2]) and by == "domain":
                continue
            lines += [f"| {heading} | documents | kept | dropped by rules | rate | by rule |",
                      "|---|---:|---:|---:|---:|---|"]
            lines += [f"| {r[by]} | {r['docs']:,} | {r['kept']:,} | {r['rule_drops']:,} | {r['drop_rate']:.1%} | "
                      + ", ".join(f"{name} {k:,}" for name, k in r["by_rule"]) + " |" for r in rule_drop_rows(cl, by)]
            lines.append("")
        if cl.by_reason:
            lines += ["| dropped by | count |", "|---|---:|"]
            lines += [f"| {r} | {n:,} |" for r, n in sorted(cl.by_reason.items(), key=lambda kv: -kv[1])]
            lines.append("")
        if cl.pii:
            lines.append("PII found: " + ", ".join(f"{k} {v:,}" for k, v in cl.pii.items()))
            lines.append("")
    return "\n".join(lines) + "\n"


def _manifest(path: str) -> dict:
    import json

    return json.loads(Path(path).read_text(encoding="utf-8"))


def mix_rows(manifest_path: str) -> list[dict]:
    m = _manifest(manifest_path)
    return [{"domain": s["domain"], "docs": s["available_docs"], "tokens": s["available_tokens"],
             "weight": round(s["weight"], 4), "target_tokens": s["target_tokens"], "epochs": round(s["epochs"], 3),
             "shards": len(s["shards"]), "validation_shards": len(s["validation_shards"])} for s in m["sources"]]


def mix_markdown(manifest_path: str) -> str:
    m = _manifest(manifest_path)
    lines = [f"# mixture {m['id']}", "", f"- manifest: `{manifest_path}`",
             f"- weights: {m['weights_provenance']['method']} {m['weights_provenance']['parameters'] or ''}",
             f"- budget: {m['budget']['total_tokens']:,} tokens, sequence length {m['budget']['sequence_length']}",
             f"- tokenizer: vocab {m['tokenizer']['vocab_size']:,}, sha256 `{m['tokenizer']['sha256'][:12]}`", "", "```"]
    lines += [f"{s['domain']:<12} {_bar(round(1000 * s['weight']), 1000)} {s['weight']:.3f}  "
              f"({s['epochs']:.2f} epochs)" for s in m["sources"]]
    lines += ["```", ""] + [f"- warning: {w}" for w in m["warnings"]]
    return "\n".join(lines) + "\n"


def record_rows(report: RunReport) -> list[dict]:
    """WARC records that are not documents, per corpus and type (counted, not curated)."""
    return [{"corpus": c.corpus, "record type": kind, "records": n}
            for c in report.corpora for kind, n in c.record_types.items()]


# The run's tables in reading order, each a title and its row builder: the CLI's summary, the summary artifact and
# the table artifacts are all made of these.
TABLES = (
    ("documents accounted for", corpus_rows),
    ("stages (wall time and rates; reused parts are not redone)", stage_rows),
    ("rejected, by reason", reason_rows),
    ("dedup (clusters: size → count)", dedup_rows),
    ("decontamination (documents sharing an n-gram with an evaluation set)", decontam_rows),
    ("classify: per predicted domain (a high rate is a rule eating a domain)", classify_rows),
    ("classify: per language (a high rate is a language the thresholds do not fit: classify.lang_rule_params)",
     language_rows),
    ("WARC records that are not documents (counted, not curated)", record_rows),
)


def cell(value) -> str:
    """A table cell as people read it: thousands separated, a check for a balanced count."""
    if isinstance(value, bool):
        return "✔" if value else "✘"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    return str(value)


def markdown_table(rows: list[dict]) -> list[str]:
    columns = list(rows[0])
    numeric = {c for c in columns if all(isinstance(r[c], (int, float)) and not isinstance(r[c], bool) for r in rows)}
    return [f"| {' | '.join(columns)} |", "|" + "|".join("---:" if c in numeric else "---" for c in columns) + "|",
            *(f"| {' | '.join(cell(r[c]) for c in columns)} |" for r in rows)]


def markdown_summary(report: RunReport) -> str:
    status = "balanced" if report.balanced else "**NOT BALANCED**"
    lines = [
        "# curate run",
        "",
        f"- work root: `{report.work_root}`",
        f"- stages: {' → '.join(report.stages)}",
        f"- config sha256: `{report.config_sha256[:16]}`",
        f"- wall time: {report.seconds:.1f} s",
        f"- documents in: **{report.docs_in:,}**, kept **{report.kept:,}**, rejected **{report.rejected:,}**"
        f" (docs_in == kept + rejected: {status})",
    ]
    lines += [f"- **warning**: {w}" for w in report.warnings]
    for title, build in TABLES:
        if rows := build(report):
            lines += ["", f"## {title}", "", *markdown_table(rows)]
    if report.ignored_files:
        lines += ["", f"## Files not read ({len(report.ignored_files)})", ""]
        lines += [f"- `{f}`" for f in report.ignored_files[:50]]
        if len(report.ignored_files) > 50:
            lines.append(f"- ... and {len(report.ignored_files) - 50} more (report.json lists all)")
    return "\n".join(lines) + "\n"


# A reject reason that took every document -> the likely fix, said to the person who ran it.
FIXES = {
    "missing_text_field": "the records keep their text under another field: set ingest.text_field",
    "text_not_string": "ingest.text_field names a field that is not text: set it to the field that holds the text",
    "malformed_json": "the files are not JSON Lines (one JSON object per line)",
    "empty_text": "the text field is empty in every record: check ingest.text_field",
    "language": "their language is not in ingest.lang_allowlist: add it, or set the allowlist to null",
    "too_large": "every record is over ingest.max_doc_bytes: raise it",
    "binary_file": "the files are not text (or not of the format their name says)",
    "unreadable_file": "the files cannot be read: check their permissions and format",
    "exact_duplicate": "every document is a copy of one the work root already holds",
    "near_duplicate": "every document is a near copy of one the work root already holds",
    "contaminated": "every document shares an n-gram with an evaluation set (decontam.sets)",
}


def nothing_kept(report: RunReport, fields: list[str] | None = None) -> str | None:
    """Why a run kept no document and what would likely fix it; None when it kept some."""
    if report.kept or not report.corpora:
        return None
    reason, n = max(report.by_reason.items(), key=lambda kv: kv[1], default=("none", 0))
    fix = FIXES.get(reason, f"the rule {reason} drops every document: see classify.rules and classify.rule_params")
    if reason == "missing_text_field" and fields:
        fix += f" (their fields: {', '.join(fields[:8])})"
    return f"no document was kept: {n:,} of {report.docs_in:,} records were rejected as {reason}; {fix}"
