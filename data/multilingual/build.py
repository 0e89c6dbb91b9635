"""Builds data/multilingual/*.jsonl.gz: clean prose in Chinese, Japanese, Korean and an English control, from three
Debian packages that translate the same manuals (see README.md beside this file for provenance and licences).

    apt-get download libreoffice-help-zh-cn libreoffice-help-ja libreoffice-help-ko libreoffice-help-en-us \
        gnome-user-docs debian-handbook
    for d in *.deb; do dpkg-deb -x "$d" root; done
    python data/multilingual/build.py root

One document per page (LibreOffice help and debian-handbook: HTML through the project's own extraction; GNOME help:
the text of Mallard's title, p, item and td elements). Pages under 300 characters, and pages left untranslated (under
30% of their letters in the language's script: Han for zh, Han and Kana for ja, Hangul for ko), are left out; each
language keeps
at most PER_SOURCE pages of each source, chosen by a hash of the page's path so that every language gets the same
pages where the manuals match.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from curate.tasks.ingest.extract import extract

HERE = Path(__file__).parent
PER_SOURCE = 120
MIN_CHARS = 300
LANGS = {  # language: (LibreOffice help, GNOME help, debian-handbook)
    "zh": ("zh-CN", "zh_CN", "zh-CN"), "ja": ("ja", "ja", "ja-JP"), "ko": ("ko", "ko", "ko-KR"),
    "en": ("en-US", "C", "en-US"),
}
MALLARD = "{http://projectmallard.org/1.0/}"


def mallard_text(path: Path) -> str:
    root = ET.parse(path).getroot()
    info = root.find(f"{MALLARD}info")
    if info is not None:
        root.remove(info)
    lines = []
    for el in root.iter():
        if el.tag in (f"{MALLARD}title", f"{MALLARD}p", f"{MALLARD}item", f"{MALLARD}td") and \
                not any(c.tag in (f"{MALLARD}p", f"{MALLARD}item") for c in el):
            text = " ".join("".join(el.itertext()).split())
            if text:
                lines.append(text)
    return "\n\n".join(lines)


SCRIPT = {
    "zh": lambda c: "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf",
    "ja": lambda c: "\u4e00" <= c <= "\u9fff" or "\u3040" <= c <= "\u30ff",
    "ko": lambda c: "\uac00" <= c <= "\ud7a3" or "\u1100" <= c <= "\u11ff",
    "en": lambda c: c.isascii(),
}


def translated(text: str, lang: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(map(SCRIPT[lang], letters)) >= 0.3 * len(letters)


def html_text(path: Path) -> str:
    return extract(path.read_text(encoding="utf-8", errors="replace"))[0]


def pages(root: Path, lang: str) -> dict[str, list[tuple[str, str]]]:
    lo, gnome, handbook = LANGS[lang]
    share = root / "usr/share"
    found = {
        "libreoffice-help": [(p.relative_to(share / "libreoffice/help" / lo).as_posix(), p)
                             for p in (share / "libreoffice/help" / lo / "text").rglob("*.html")],
        "gnome-user-docs": [(p.relative_to(share / "help" / gnome).as_posix(), p)
                            for p in (share / "help" / gnome).rglob("*.page")],
        "debian-handbook": [(p.name, p) for p in (share / "doc/debian-handbook/html" / handbook).glob("*.html")],
    }
    out = {}
    for source, items in found.items():
        docs = []
        for rel, path in sorted(items, key=lambda it: hashlib.sha256(it[0].encode()).hexdigest()):
            try:
                text = mallard_text(path) if path.suffix == ".page" else html_text(path)
            except ET.ParseError:
                continue
            if len(text) >= MIN_CHARS and translated(text, lang):
                docs.append((rel, text))
            if len(docs) == PER_SOURCE:
                break
        out[source] = docs
    return out


def main(root: Path) -> None:
    for lang in LANGS:
        with gzip.open(HERE / f"{lang}.jsonl.gz", "wt", encoding="utf-8", compresslevel=9) as f:
            for source, docs in pages(root, lang).items():
                for rel, text in docs:
                    f.write(json.dumps({"id": f"{source}/{rel}", "text": text, "source": source, "lang": lang},
                                       ensure_ascii=False) + "\n")
                print(lang, source, len(docs))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
