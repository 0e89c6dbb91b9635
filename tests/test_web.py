"""Crawled web on the real WARCs of ../shared/corpora/web: every response and revisit accounted for with its reason,
the cut file reported with what came before it kept, legacy charsets decoded, main content without navigation,
provenance kept, the same URL crawled twice kept once (the latest), blocked URLs, reuse on a re-run."""
import collections
import gzip
import io

import pyarrow.parquet as pq
import pytest
from fastwarc.warc import ArchiveIterator

from curate.schemas.config import IngestConfig, WebConfig
from curate.schemas.inputs import InputFile
from curate.tasks.engine.verdicts import rejects as verdict_rejects
from curate.tasks.ingest.ingest import ingest_file
from curate.tasks.ingest.extract import extract
from curate.tasks.ingest.web import decode_html
from tests.conftest import SHARED_CORPORA

WEB = SHARED_CORPORA / "web"


def _ingest(tmp_path, path, **web):
    res = ingest_file(InputFile("web", str(path), path.name), IngestConfig(web=WebConfig(**web)), tmp_path)
    assert res.docs_in == res.kept + res.rejected
    docs = pq.read_table(tmp_path / res.parts[0].docs_path).to_pylist()
    rejects = pq.read_table(tmp_path / res.rejects_path).to_pylist()
    return res, docs, rejects


def _census(path):
    """An independent count of what the file holds, straight from FastWARC."""
    c = collections.Counter()
    for rec in ArchiveIterator(open(path, "rb"), parse_http=True):
        kind = str(rec.record_type).split(".")[-1]
        if kind == "response":
            status = rec.http_headers.status_code
            html = (rec.http_content_type or "").startswith(("text/html", "application/xhtml+xml"))
            c["response"] += 1
            c["not 200"] += status != 200
            c["200 not html"] += status == 200 and not html
        else:
            c[kind] += 1
    return c


@pytest.mark.parametrize("name", ["crawl-00000.warc.gz", "crawl-00005.warc.gz", "crawl-00006.warc.gz",
                                  "iana.warc.gz"])
def test_every_response_and_revisit_is_accounted_for_by_reason(tmp_path, name):
    """crawl-00006 holds SQLite's cross-reference page (6,039 links in one list, next to a paragraph): a walk over
    the list's links that was quadratic ran past the 10 s a page is given, and lost the page."""
    c = _census(WEB / name)
    res, docs, rejects = _ingest(tmp_path, WEB / name)
    assert "timeout" not in res.by_reason, [r["excerpt"] for r in rejects if r["reason"] == "timeout"]
    assert res.docs_in == c["response"] + c["revisit"]
    assert res.by_reason.get("http_status", 0) == c["not 200"]
    assert res.by_reason.get("not_html", 0) == c["200 not html"]
    assert res.by_reason.get("revisit", 0) == c["revisit"]
    assert res.record_types == {k: v for k, v in c.items() if k in ("request", "warcinfo", "metadata", "resource")}
    assert all(d["url"] and d["host"] and d["crawl_date"] and d["warc_record_id"] for d in docs)
    assert [d["id"] for d in docs] == [d["warc_record_id"] for d in docs], "ids are the WARC record ids: stable"
    redirects = [r for r in rejects if r["reason"] == "http_status" and r["detail"].startswith("HTTP 30")]
    if name == "iana.warc.gz":
        assert redirects and all(" -> " in r["detail"] for r in redirects), "a redirect names where it goes"


def test_the_cut_file_is_reported_and_what_came_before_is_kept(tmp_path):
    res, docs, rejects = _ingest(tmp_path, WEB / "crawl-truncated.warc.gz")
    cut = [r for r in rejects if r["reason"] == "truncated_file"]
    assert len(cut) == 1 and "records read before it" in cut[0]["detail"]
    assert res.docs_in == _census(WEB / "crawl-truncated.warc.gz")["response"]
    assert res.kept > 150
    full, fdocs, _ = _ingest(tmp_path / "full", WEB / "crawl-00007.warc.gz")  # the file it was cut from
    assert [d["url"] for d in docs] == [d["url"] for d in fdocs[: len(docs)]], "the same pages, in order, up to the cut"


def test_legacy_charsets_decode_as_a_browser_does(tmp_path):
    assert decode_html(b"<p>caf\xe9 \x93quoted\x94</p>", "windows-1252")[0] == "<p>café “quoted”</p>"
    assert decode_html("<p>caf\xe9</p>".encode("cp1252"), "ISO-8859-1") == ("<p>café</p>", "cp1252")
    meta = b'<html><head><meta charset="windows-1252"></head><body>na\xefve</body></html>'
    assert "naïve" in decode_html(meta, None)[0]
    assert decode_html(b"\xef\xbb\xbf<p>\xc3\xa9</p>", "iso-8859-1")[0] == "<p>é</p>", "a BOM wins over the header"
    legacy = quotes = 0
    for name in sorted(WEB.glob("crawl-0000*.warc.gz")):
        _, docs, _ = _ingest(tmp_path / name.stem, name)
        for d in docs:
            if d["charset"] == "cp1252":
                legacy += 1
                assert not any(m in d["text"] for m in ("Ã©", "â€", "\ufffd")), d["url"]
                assert not any("\x80" <= ch <= "\x9f" for ch in d["text"]), f"C1 controls in {d['url']}"
                quotes += any(ch in d["text"] for ch in "’“”—")
    assert legacy >= 140 and quotes >= 20


def test_main_content_stays_and_navigation_goes():
    for rec in ArchiveIterator(open(WEB / "crawl-00001.warc.gz", "rb"), parse_http=True):
        if rec.headers.get("WARC-Target-URI") == "https://www.postgresql.org/docs/15/checksums.html" and \
                str(rec.record_type).endswith("response"):
            html, _ = decode_html(rec.reader.read(), rec.http_charset)
            break
    text, title = extract(html)
    assert title == "30.2.\xa0Data Checksums"  # the page's own no-break space
    assert "By default, data pages are not protected by checksums" in text
    assert "pg_checksums application can be used" in text
    for chrome in ("Prev", "Home", "Next", "Up\t"):
        assert chrome not in text, f"navigation {chrome!r} survived"
    code = next(t for t in (extract(decode_html(r.reader.read(), r.http_charset)[0])[0]
                            for r in ArchiveIterator(open(WEB / "crawl-00000.warc.gz", "rb"), parse_http=True)
                            if r.headers.get("WARC-Target-URI", "").endswith("sqlite3session_enable.html")
                            and str(r.record_type).endswith("response")))
    assert "int sqlite3session_enable(sqlite3_session *pSession, int bEnable);" in code, "code blocks survive"


def _warc(records):
    """A .warc.gz of response records (url, date, html bytes): one gzip member each, as crawlers write them."""
    out = io.BytesIO()
    for k, (url, date, body) in enumerate(records):
        http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + body
        head = (f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-{k:012d}>\r\n"
                f"WARC-Date: {date}\r\nWARC-Target-URI: {url}\r\nContent-Type: application/http; msgtype=response\r\n"
                f"Content-Length: {len(http)}\r\n\r\n").encode()
        out.write(gzip.compress(head + http + b"\r\n\r\n"))
    return out.getvalue()


def test_the_same_url_twice_keeps_the_latest_capture_and_blocked_urls_go(tmp_path):
    from curate.schemas.config import DedupConfig
    from curate.tasks.dedup.dedup import dedup_corpus, sign_part

    page = "<html><body><h1>Tides</h1><p>{}</p></body></html>"
    old = page.format("The harbour floods at the spring tide twice a year, and the boats are hauled up the slip.")
    new = page.format("Since the new sea wall was built the harbour no longer floods at the spring tide at all.")
    other = page.format("An unrelated page about lighthouses, their keepers and the fog signals they sounded.")
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "recrawl.warc.gz"
    path.write_bytes(_warc([("https://example.org/tides", "2024-01-05T10:00:00Z", old.encode()),
                            ("https://example.org/tides", "2025-03-01T09:00:00Z", new.encode()),
                            ("https://ads.tracker.test/x", "2025-03-01T09:00:00Z", other.encode()),
                            ("https://example.org/lighthouses?sessionid=9", "2025-03-01T09:00:00Z", other.encode())]))
    blocklist = tmp_path / "hosts.txt"
    blocklist.write_text("# blocked\ntracker.test\n")
    res, docs, rejects = _ingest(tmp_path, path, blocklist_files=[str(blocklist)], banned_url_substrings=["sessionid="])
    assert sorted(r["reason"] for r in rejects) == ["url_blocked", "url_blocked"]
    assert {r["detail"] for r in rejects} == {"host ads.tracker.test is on the blocklist (tracker.test)",
                                             "the URL contains 'sessionid='"}
    sign_part(res.parts[0], DedupConfig(), tmp_path)
    rep = dedup_corpus("web", res.parts, DedupConfig(), tmp_path)
    assert rep.duplicate_urls == 1 and rep.kept == 1
    dup = verdict_rejects(tmp_path, "dedup", res.parts[0]).to_pylist()
    assert dup[0]["reason"] == "duplicate_url" and "floods at the spring tide twice" in dup[0]["excerpt"]
    assert dup[0]["duplicate_of"] == docs[1]["id"], "the latest capture is kept"


def test_a_rerun_reuses_the_ingested_parts(tmp_path):
    first, _, _ = _ingest(tmp_path, WEB / "iana.warc.gz")
    again, _, _ = _ingest(tmp_path, WEB / "iana.warc.gz")
    assert not first.reused and again.reused and again.kept == first.kept


ARTICLES = SHARED_CORPORA.parent / "bench" / "article-extraction"


def _article(key_prefix):
    import json

    truth = json.loads((ARTICLES / "ground-truth.json").read_text())
    key = next(k for k in truth if k.startswith(key_prefix))
    raw = gzip.open(ARTICLES / "html" / f"{key}.html.gz").read()
    return decode_html(raw, None)[0], truth[key]["articleBody"]


def _recall(text, truth):
    got, want = collections.Counter(text.split()), collections.Counter(truth.split())
    return sum((got & want).values()) / sum(want.values())


@pytest.mark.parametrize("key", ["c467d507", "8267acac", "6ebac05f"])
def test_a_page_whose_wrapper_is_named_like_chrome_keeps_its_article(key):
    """Class-name selectors ("sidebar", "breadcrumb") once matched these pages' article wrappers and erased them."""
    html, truth = _article(key)
    assert _recall(extract(html)[0], truth) > 0.8  # was 0: nothing but a few words


def test_chrome_lines_inside_the_main_block_go_and_the_article_stays():
    html, truth = _article("264dc3ae")  # "Read More" after every teaser, a "turn on notifications" prompt
    raw, _ = extract(html, "resiliparse")
    text, _ = extract(html)
    assert "Read More" in raw and "Read More" not in text
    assert "CLICK HERE" not in text
    assert _recall(text, truth) >= _recall(raw, truth) - 0.01


def test_code_lists_and_tables_are_kept_as_text_and_code_is_never_trimmed():
    from curate.tasks.ingest.extract import trim_chrome_lines

    html = ("<html><body><nav>Home | Subscribe</nav><main><h1>Reading cookies</h1>"
            "<p>The module reads the cookies a server sent. It keeps them in a jar until the session ends.</p>"
            "<pre>jar = load_cookies(path)\nfor cookie in jar:\n    print(cookie.name)</pre>"
            "<ol><li>a name and a value</li><li>an expiry date</li></ol><dl><dt>path</dt><dd>where it applies</dd></dl>"
            "<table><tr><th>field</th><th>meaning</th></tr><tr><td>domain</td><td>where it is sent</td></tr></table>"
            "<p>Every cookie the jar holds is sent back with the next request to its domain.</p></main>"
            "<footer>Copyright 2024</footer></body></html>")
    text, _ = extract(html)
    for kept in ("jar = load_cookies(path)", "    print(cookie.name)", "a name and a value", "an expiry date",
                 "where it applies",
                 "domain", "where it is sent", "sent back with the next request"):
        assert kept in text, kept
    assert "Copyright" not in text and "Subscribe" not in text
    assert trim_chrome_lines("Share on Facebook\nThe first sentence.\nfor cookie in jar:\n  sign_up(cookie)\n"
                             "This site uses cookies.\nAdvertisement") == \
        "The first sentence.\nfor cookie in jar:\n  sign_up(cookie)"


def test_a_gallery_caption_a_photo_credit_and_the_headline_are_not_the_article():
    """A news page's text as Resiliparse gives it: a slideshow's caption three times, its photo credit, the page title
    as the headline; the article's sentences and a repeated line of code stay. The caption goes with its credit."""
    from curate.tasks.ingest.extract import trim_chrome_lines

    caption = "U.S. Defense Secretary Mark Esper, left, and Vietnam's Defense Minister shake hands in Hanoi."
    lead = "HANOI, Vietnam (AP) \u2014 The Secretary spoke on Wednesday at the academy in the city."
    later = "He met several officials and visited the prison the soldiers once called the Hanoi Hilton."
    code = "x = load_the_configuration_from(path, strict=True)"
    text = "\n".join([f"  \u2022 {caption}", f"    {caption}", "    Photo: Hau Dinh, AP",
                      "Esper urges Vietnam to push back against China at sea", lead, caption, later, code, code])
    trimmed = trim_chrome_lines(text, "Esper urges Vietnam to push back against China at sea | AP News").split("\n")
    assert trimmed == [lead, later, code, code]
    # a caption that credits itself, and a credit that names its agency after a bar
    assert trim_chrome_lines(f"{lead}\nA long row of unsold vehicles sits at a dealership. (AP Photo/David Zalubowski)"
                             f"\n{later}\nThe sheikh passes a Boeing 787-10 at the air show.\n"
                             f"Natalie Naccache | Bloomberg | Getty Images\n{code}") == f"{lead}\n{later}\n{code}"


def test_a_list_among_an_articles_paragraphs_is_its_text_and_a_list_of_related_links_is_not():
    """Resiliparse's main-content rule takes a list for a menu when it is shallow (under four elements below <body>)
    or its links are over a fifth of its text: a news story's key points, which link their words, were lost. Lists
    next to the story's paragraphs are kept; a list of links there (an inline "Related:" block) still goes."""
    para = "<p>Paragraph {} of the story says what happened on the day, and who was there to see it happen.</p>"
    html = ("<html><head><title>Storm</title></head><body><nav><ul><li><a href='/'>Home</a></li>"
            "<li><a href='/news'>News</a></li></ul></nav><article><header><h1>Storm</h1><p>By A. Writer</p></header>"
            "<div class='story'>" + para.format(1) +
            "<ul><li>The plain points of the story, each in a sentence.</li><li>A second point, also a sentence.</li>"
            "</ul>" + para.format(2) +
            "<ul><li><a href='/a'>Retiring early</a> takes time and incredible discipline.</li>"
            "<li>Aim to save <a href='/b'>thirty times</a> your yearly expenses before you stop.</li></ul>"
            + para.format(3) +
            "<ul><li><a href='/r1'>Another story of the same site</a></li><li><a href='/r2'>And one more</a></li></ul>"
            + para.format(4) + "</div></article></body></html>")
    text, _ = extract(html)
    for kept in ("The plain points of the story", "A second point", "Retiring early takes time", "thirty times your",
                 "Paragraph 4"):
        assert kept in text, kept
    assert "Another story" not in text and "Home" not in text
    assert "Retiring early" not in extract(html, "resiliparse")[0]
    assert text.index("Paragraph 1") < text.index("The plain points") < text.index("Paragraph 2")


def test_a_page_the_fast_extractor_finds_nothing_in_is_read_by_trafilatura():
    """Resiliparse's main-content rule takes a shallow <ul> for a menu: a page that is one bulleted list of prose
    comes out empty, and trafilatura reads it instead."""
    items = "".join(f"<li>Step {k} tells one more part of the procedure, in full sentences that go on for a while so "
                    f"that the page has text.</li>" for k in range(30))
    html = f"<html><head><title>Steps</title></head><body><ul>{items}</ul></body></html>"
    assert len(extract(html, "resiliparse")[0]) < 200
    text, title = extract(html)
    assert text == extract(html, "trafilatura")[0] and "Step 29 tells" in text and title == "Steps"


def test_a_page_of_links_is_navigation_and_not_sent_to_trafilatura():
    """A site map or an index comes out (nearly) empty from the fast extractor, as navigation should; trafilatura
    would return its link list (at up to 2 s a page on the shared crawl's cross-reference pages)."""
    links = "".join(f'<li><a href="/page{k}.html">The page about topic number {k}</a></li>' for k in range(200))
    html = f"<html><head><title>Site map</title></head><body><ul>{links}</ul></body></html>"
    assert "topic number 199" in extract(html, "trafilatura")[0]
    text, title = extract(html)
    assert len(text) < 200 and title == "Site map"


def test_what_follows_the_article_and_a_long_cookie_notice_are_not_the_article():
    from curate.tasks.ingest.extract import trim_chrome_lines

    body = [f"Paragraph {k} of the story says what happened on the day, and who was there to see it." for k in range(6)]
    consent = ("We use cookies and other tracking technologies to improve your browsing experience on our site, show "
               "personalized content and targeted ads, analyze site traffic, and understand where our audiences come "
               "from. By choosing I Accept, you consent to our use of cookies.")
    teasers = ["More in Minnesota Wild", "The coach has heeded warnings over the past couple of weeks, and it shows.",
               "Comments"]
    assert trim_chrome_lines("\n".join([consent, *body, *teasers])) == "\n".join(body)
    # early in the text, such a heading is one of its sections: "Comments" in a manual of a language
    early = ["Comments", *body]
    assert trim_chrome_lines("\n".join(early), heading_is_text=True) == "\n".join(early)


def test_a_manuals_page_keeps_its_heading_and_its_bulleted_lists_but_not_its_table_of_contents():
    """Resiliparse's main-content rule drops a <ul> whose links are over a fifth of its text; a manual's page (its <h1>
    opens a <section>, a paragraph after it) is read whole from that section, as trafilatura reads it."""
    html = ("<html><head><title>Security Considerations - Python docs</title></head><body>"
            "<div class='sphinxsidebar'><ul><li><a href='/'>Home</a></li></ul></div>"
            "<div class='body' role='main'><section><h1>Security Considerations</h1>"
            "<p>The following modules have specific security considerations:</p>"
            "<ul><li><p><a href='base64.html'>base64</a>: security considerations in RFC 4648</p></li>"
            "<li><p>random shouldn't be used for security purposes, use secrets instead</p></li></ul>"
            "<div class='toctree-wrapper'><ul><li><a href='a.html'>Another page of the manual</a></li></ul></div>"
            "<p>The -I command line option can be used to run Python in isolated mode.</p></section></div>"
            "<footer>Copyright 2001 Python Software Foundation</footer></body></html>")
    text, title = extract(html)
    assert "Security Considerations" in text.split("\n")[0]
    assert "security considerations in RFC 4648" in text and "use secrets instead" in text
    assert "Another page" not in text and "Home" not in text and "Copyright" not in text
    assert "use secrets instead" not in extract(html, "resiliparse")[0]
