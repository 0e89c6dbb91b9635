"""Main-content extraction (`extract`), and the same in a child process under a time limit per page.

Extraction is C++ (resiliparse) or lxml under trafilatura: a page can take minutes, and neither a signal nor a
thread can stop code that never returns to Python. So the reader hands each page to a child process of its own and
waits at most `timeout_s` for the answer; a page that takes longer is a `timeout` reject, the child is killed and a
fresh one started for the next page (datatrove's extractors sandbox theirs the same way). A child that dies on a page
(a crash in the extractor) makes that page a `malformed_record` reject, and the next page gets a fresh child too.

The pipe carries a 4-byte length and then the page (UTF-8) one way, and a length and a JSON answer the other.
"""
from __future__ import annotations

import bisect
import itertools
import json
import os
import re
import selectors
import subprocess
import sys
import time

_READY = b"ready\n"
_START_S = 120  # importing the extractor on a loaded machine: not counted against a page


# Page chrome Resiliparse's main-content heuristic can leave in: by tag or ARIA role, and by whole class or id names
# (PostgreSQL's "Prev Up Home Next" tables, Sphinx's sidebars). Never by class-name substring: "sidebar", "menu" or
# "toc" inside a name also match the body or article wrapper of some sites ("no-sidebar", "photocaption") and erased
# whole articles (10 of the 181 pages of ../shared/bench/article-extraction).
CHROME = ["nav", "header", "footer", "aside", '[role="navigation"]', '[role="banner"]', '[role="contentinfo"]',
          ".navheader", ".navfooter", ".breadcrumb", ".breadcrumbs", "#breadcrumbs", ".sidebar", "#sidebar",
          ".sphinxsidebar", ".toc", "#toc", ".menu", "#menu"]
# Tables of contents inside a document's section (Sphinx's toctree, docutils' "contents" topic): lists of links to
# other pages or sections, not text.
CONTENTS = [".toctree-wrapper", ".contents", "#contents"]

# A short line that says one of these is site chrome left inside the main block (share bars, ad labels, cookie and
# newsletter prompts, bylines' "Updated:", photo credits); checked on lines of at most _CHROME_LINE_WORDS words.
_CHROME_WORDS = re.compile(
    r"(?i)\b(advertisement|advertising|subscribe|subscribing|newsletter|(uses|accept) cookies|cookie (policy|settings)|"
    r"read more|related (articles|stories|posts)|sign up|log ?in|follow us|share (this|on)|all rights reserved|"
    r"copyright|photo:|image \d+ of|caption|loading|breaking news|published:|updated:|tags:|categor(y|ies|ias)|"
    r"click here|whatsapp|facebook|twitter|pinterest|e-?paper)(?:\b|(?<=:))|\u00a9")  # ("photo:" ends in no \b)
_CHROME_WORDS_LOWER = re.compile(_CHROME_WORDS.pattern.removeprefix("(?i)"))
_CHROME_LINE_WORDS = 16
# A cookie-consent notice is chrome at any length (they run to 50 words), up to _CONSENT_CHARS.
_CONSENT = re.compile(r"(?i)\b((we|site|website) (uses?|is using) cookies|use of cookies|accept (all )?cookies|"
                      r"cookie (policy|settings|preferences|consent))\b")
_CONSENT_CHARS = 600
# A short heading that opens what a news page shows below its article (related stories, comments, polls, "more in"
# teasers): in the text's second half, it and everything after it go. Not "don't miss" or "see also": pages put
# those inside their text.
_TAIL_HEADING = re.compile(
    r"(?i)\s*(more (in|from|on|stories|news|articles|videos)\b.*|you (may|might) also (like|enjoy)|"
    r"related( articles| stories| posts| content| coverage| news| reading)?|recommended( for you| stories| articles)?|"
    r"popular (on|in|now)\b.*|most (popular|read|viewed|shared)|trending( now| stories)?|(what to )?read next|"
    r"\d* ?comments?|leave a (comment|reply)|join the (discussion|conversation)|also read|"
    r"latest (news|stories|articles)|top stories|editor'?s picks)\s*[.:\u2026]*\s*")
_TAIL_CHARS, _TAIL_FROM = 60, 0.5
# A post the article quotes (an embedded tweet) is its text, but Resiliparse drops it for its social-media class name:
# its class is renamed in the parsed page (a pattern over the page's HTML cost a quarter of the extraction's time).
_EMBEDDED_POSTS, _QUOTED_POST = ".twitter-tweet, .instagram-media", "quoted-post"
# A bulleted list among an article's paragraphs (a story's key points) is its text, but Resiliparse drops a list whose
# links are over a fifth of its text, as a menu. A list next to a paragraph of at least _PARAGRAPH_CHARS has its links
# unwrapped (made plain text), unless it is nearly all links (_LINKED_LIST): an inline "Related:" list, which readers
# and the references skip. A list less than _LIST_DEPTH elements below <body> is a menu to that rule too: it is
# wrapped deeper. Found in the same walk over the page as the posts (each walk is a twentieth of the time).
_ARTICLE_LISTS, _PARAGRAPH_CHARS, _LINKED_LIST, _LIST_DEPTH = "p + ul, ul:has(+ p)", 80, 0.8, 4
# A manual's page (its <h1> opens a section, article or main element, a paragraph right after it) is read whole from
# that element, unless that is under _SECTION_SHARE of the main content (the heading of one small part of the page).
_SECTIONING, _HEADING_SIBLINGS, _SECTION_SHARE = ("section", "article", "main"), 3, 0.5
_CHROME_LINE_CHARS = 200  # longer lines are never that short: they are not searched
_EDGE_LINE_WORDS = 8  # a line this short without a sentence's end, before or after the text, is a headline or date
_SENTENCE_END = re.compile(r"[.!?\u3002\uff01\uff1f\u2026:\"'\u201d\u2019)\]]\s*$")
_WORD = re.compile(r"\w+")
_REPEAT_CHARS = 40  # a prose line this long said twice on a page is said once too often
_HEADLINE_WORDS, _RETITLED = (3, 20), 0.5
_TITLE_PARTS, _TITLE_CHARS, _TITLE_LINES = re.compile(r"\s[|\-\u2013\u2014:]\s"), 15, 10
_LIST_ITEM = re.compile(r"\s*(\u2022|\d+\.)\s")  # a list's items are content at any place
_CODE = re.compile(r"[(){}\[\]=;<>_]")  # a bracketed line or an assignment is code or data: never trimmed
_CODE_SIGNS = re.compile(r"[{};=]|\w[(\[]")  # a line said twice is kept if code: a call, not a caption's "(AP)"
# A photo's credit line ("Photo: Hau Dinh, AP", "Naccache | Bloomberg | Getty Images", "(Image: © NASA)"), the
# caption it credits (the line above it), and a caption that credits itself ("... (AP Photo/David Zalubowski)",
# "(Photo by Kevin Mazur/Getty Images)").
_CREDIT = re.compile(r"(?im)^[ \t]*(\(?(photo|image|picture)s?( credit)?:|credit:)|"
                     r"\|[ \t]*(getty images|shutterstock|reuters|afp|ap|associated press)[ \t]*$|"
                     r"\((ap )?(photo|image|picture)s?( by|/)[^)\n]*\)[ \t]*$")
_CREDIT_HINTS = ("photo", "image", "picture", "credit", "|")  # one of these is in every credit: a page without skips it
_CREDIT_CHARS, _CAPTION_CHARS = 300, 400
# A news story's credits anywhere ("(Reporting by ...; Editing by ...)", "X contributed to this report.", "First
# published on ..."), and its writer's biography among its last _BIO_LINES lines ("Meg James is a corporate media
# reporter for the Los Angeles Times, ...").
_STORY_CREDIT = re.compile(r"(?im)^[ \t]*\(?((additional )?reporting|editing) by\b|^[ \t]*(first )?published (on|at)\b|"
                           r"\bcontributed to this (report|story|article)\.?[ \t]*$")
_BIO = re.compile(r"^\s*[A-Z][\w.'\u2019-]*( [A-Z][\w.'\u2019-]*){0,3} (is|was|has been) (a|an|the)\b[^.]{0,120}\b(?i:"
                  r"reporter|writer|journalist|editor|correspondent|columnist|contributor|curator|author|producer|"
                  r"blogger)\b")
_STORY_CREDIT_HINTS = ("reporting by", "editing by", "published", "contributed to this")
_STORY_CREDIT_CHARS, _BIO_CHARS, _BIO_LINES = 400, 600, 4
# The fast extractor's answer looks wrong when it is this short while the page shows at least _MIN_SHOWN characters
# and ten times more text, and that text is not mostly links: then trafilatura reads the page (the sandbox's
# per-page time limit covers both). A page of links (a site map, an index, a table of contents) is navigation:
# trafilatura would return its link list, at up to 2 s a page (the shared crawl's cross-reference pages).
_SHORT_CHARS, _PAGE_RATIO, _MIN_SHOWN, _LINK_LIST = 200, 0.1, 1000, 0.5
_TEXT_ONLY = dict(links=False, form_fields=False, noscript=False, comments=False, alt_texts=False)
_SHOWN = dict(_TEXT_ONLY, main_content=False)  # all the visible text of a page


def trim_chrome_lines(text: str, title: str | None = None, heading_is_text: bool = False) -> str:
    """The text without what follows its end (related stories, comments), without chrome lines and cookie notices,
    without a line said again (a gallery's captions, a teaser of the lead: the first one stays), without the page's
    title as its headline, and without the short non-sentences (headlines, dates, bylines) at its edges; with
    `heading_is_text` (a manual's page, whose heading opens its text) the top edge and the title stay."""
    lowered = text.lower()  # where a hint is not, its pattern is not looked for
    lines = _without_credits(_first_of_each(_before_tail(text.split("\n"), len(text))), lowered)
    if "cookie" in lowered and _CONSENT.search(text):  # (the pattern over every text cost a third of the trim)
        lines = [line for line in lines if len(line) > _CONSENT_CHARS or not _CONSENT.search(line)]
    if not heading_is_text:
        lines = _without_headline(lines, title)
    suspects = _lines_found(lines, _chrome_words, _CHROME_LINE_CHARS)
    lines = [line for k, line in enumerate(lines) if k not in suspects or not _chrome_line(line)]
    return "\n".join(_without_edges(lines, keep_top=heading_is_text))


def _without_edges(lines: list[str], keep_top: bool) -> list[str]:
    """The lines without the short non-sentences before and after the text (blank lines only at the top with
    `keep_top`)."""
    while lines and _edge_line(lines[0]) and not (keep_top and lines[0].strip()):
        lines.pop(0)
    while lines and _edge_line(lines[-1]):
        lines.pop()
    return lines


def _lines_found(lines: list[str], finditer, max_chars: int) -> set[int]:
    """The lines (of at most max_chars) in which finditer(text) finds something: one scan over their joined text (a
    scan per line, or of the whole text, was a third of the time)."""
    within = [k for k, line in enumerate(lines) if len(line) <= max_chars]
    starts = list(itertools.accumulate((len(lines[k]) + 1 for k in within), initial=0))
    return {within[bisect.bisect_right(starts, m.start()) - 1] for m in finditer("\n".join(lines[k] for k in within))}


def _before_tail(lines: list[str], chars: int) -> list[str]:
    """The lines before the first tail heading in the text's second half (all of them when there is none)."""
    at = 0
    for k, line in enumerate(lines):
        if at >= _TAIL_FROM * chars and len(line) <= _TAIL_CHARS and _TAIL_HEADING.fullmatch(line):
            return lines[:k]
        at += len(line) + 1
    return lines


def _first_of_each(lines: list[str]) -> list[str]:
    """Each prose line of at least _REPEAT_CHARS once: the first time it comes (code repeats itself, and is kept).
    Most pages say no line twice: only where one is, are the lines' code signs looked at. A line is its key as it
    stands: Resiliparse has collapsed its spaces (collapsing them again was a tenth of the trim's time)."""
    keys = [line.strip().lstrip("\u2022 ") if len(line) >= _REPEAT_CHARS else None for line in lines]
    long = [key for key in keys if key is not None]
    if len(set(long)) == len(long):
        return lines
    seen, out = set(), []
    for line, key in zip(lines, keys):
        if key is not None and not _CODE_SIGNS.search(line):
            if key in seen:
                continue
            seen.add(key)
        out.append(line)
    return out


def _without_credits(lines: list[str], lowered: str) -> list[str]:
    """The lines without photo credits and the captions they credit, without the story's credits, and without its
    writer's biography at its end (`lowered`: the whole text lower-cased, where the credits' hints are looked for)."""
    credits = _lines_found(lines, _CREDIT.finditer, _CREDIT_CHARS) if _any_in(_CREDIT_HINTS, lowered) else set()
    drop = credits | (_lines_found(lines, _STORY_CREDIT.finditer, _STORY_CREDIT_CHARS)
                      if _any_in(_STORY_CREDIT_HINTS, lowered) else set())
    written = [k for k, line in enumerate(lines) if line.strip()]
    for above, k in zip(written, written[1:]):
        # the caption a credit credits; "(Image: \u00a9 X)" credits no line above
        if k in credits and not lines[k].rstrip().endswith(")") and len(lines[above]) < _CAPTION_CHARS:
            drop.add(above)
    drop.update(k for k in written[-_BIO_LINES:] if len(lines[k]) < _BIO_CHARS and _BIO.search(lines[k]))
    return [line for k, line in enumerate(lines) if k not in drop] if drop else lines


def _any_in(words: tuple[str, ...], text: str) -> bool:
    return any(word in text for word in words)


def _without_headline(lines: list[str], title: str | None) -> list[str]:
    """The lines without the page's title where it heads the text (the title as the page has it, or one part of it:
    "Headline | Site", "Headline - Site"), among its first lines; and without a first line that is a headline in
    other words (the length of one, no sentence's end, half of its words in the title: a search engine's title)."""
    if not title:
        return lines
    heads = _title_lines(lines, title)
    first = next((k for k, line in enumerate(lines) if line.strip() and k not in heads), None)
    if first is not None and _retitled(lines[first], title):
        heads.add(first)
    return [line for k, line in enumerate(lines) if k not in heads]


def _title_lines(lines: list[str], title: str) -> set[int]:
    """Which of the first lines say the title, whole or one part of it."""
    whole = " ".join(title.split())
    parts = {p for p in (" ".join(x.split()) for x in _TITLE_PARTS.split(title)) if len(p) > _TITLE_CHARS}
    return {k for k, line in enumerate(lines[:_TITLE_LINES])
            if len(key := " ".join(line.split())) > _TITLE_CHARS and (key in parts or key in whole)}


def _retitled(line: str, title: str) -> bool:
    words = [w.lower() for w in _WORD.findall(line)]
    if not _HEADLINE_WORDS[0] <= len(words) <= _HEADLINE_WORDS[1] or _SENTENCE_END.search(line):
        return False
    in_title = {w.lower() for w in _WORD.findall(title)}
    return sum(w in in_title for w in words) >= _RETITLED * len(words)


def _chrome_words(text: str):
    """_CHROME_WORDS' matches: over the lower-cased text, 2.4x faster than ignoring case, where lower-casing keeps
    every offset (it does not for a few letters, such as the dotted capital I)."""
    lowered = text.lower()
    return _CHROME_WORDS_LOWER.finditer(lowered) if len(lowered) == len(text) else _CHROME_WORDS.finditer(text)


def _chrome_line(line: str) -> bool:
    return not _CODE.search(line) and len(_WORD.findall(line)) <= _CHROME_LINE_WORDS


def _edge_line(line: str) -> bool:
    return not line.strip() or (len(_WORD.findall(line)) <= _EDGE_LINE_WORDS and not _SENTENCE_END.search(line)
                                and not _LIST_ITEM.match(line))


def _parsed(html: str) -> tuple[object, str | None]:
    from resiliparse.parse.html import HTMLTree

    tree = HTMLTree.parse(html)
    return tree, tree.title or None  # the title before extraction, which may remove nodes


def _main_text(tree) -> str:
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(tree, preserve_formatting=True, main_content=True, list_bullets=True,
                              skip_elements=CHROME, **_TEXT_ONLY)


def _resiliparse(html: str) -> tuple[str, str | None]:
    """Resiliparse's main content alone."""
    tree, title = _parsed(html)
    return _main_text(tree), title


def _keep_article_parts(tree):
    """What the main-content rule would drop from an article's text, kept: the posts it quotes (renamed), and the
    lists among its paragraphs (unlinked; not on a manual's page, whose section is read whole). Returns that section
    (None on other pages). One walk over the page finds the posts, the lists and the first <h1>."""
    if tree.body is None:
        return None
    found = _all(tree.body, f"{_EMBEDDED_POSTS}, {_ARTICLE_LISTS}, h1")
    section = _opening_section(next((node for node in found if node.tag == "h1"), None))
    for node in found:
        if node.tag == "ul":
            if section is None and _among_paragraphs(node) and _unlinked(tree, node):
                _deepen(tree, node)
        elif node.tag != "h1":
            node.setattr("class", _QUOTED_POST)
    return section


def _all(node, selector: str) -> tuple:
    """The elements under node that match, as a tuple: Resiliparse's collection finds its k-th element by walking from
    the first, so iterating over one is quadratic (72 s over SQLite's cross-reference page and its 6,039 links);
    a slice is one walk."""
    return node.query_selector_all(selector)[:]


def _among_paragraphs(node) -> bool:
    return any(sib is not None and sib.tag == "p" and len(sib.text.strip()) >= _PARAGRAPH_CHARS
               for sib in (node.previous_element_sibling, node.next_element_sibling))


def _deepen(tree, node) -> None:
    """The node wrapped in <div>s until it is _LIST_DEPTH elements below <body> (Resiliparse's main-content rule takes
    any list less deep for the site's menu)."""
    depth, above = 1, node.parent
    while depth < _LIST_DEPTH and above is not None and above.tag != "body":  # (a hostile page nests thousands)
        depth, above = depth + 1, above.parent
    for _ in range(_LIST_DEPTH - depth):
        wrapper = tree.create_element("div")
        node.parent.replace_child(wrapper, node)
        wrapper.append_child(node)


def _unlinked(tree, node) -> bool:
    """Whether the node's links were made plain text: not where they are nearly all of it."""
    links = _all(node, "a")
    if sum(len("".join(a.text.split())) for a in links) > _LINKED_LIST * len("".join(node.text.split())):
        return False
    for link in links:
        span = tree.create_element("span")
        for child in link.child_nodes[:]:
            span.append_child(child)
        link.parent.replace_child(span, link)
    return True


def _trafilatura(html: str) -> tuple[str, str | None]:
    import trafilatura

    text = trafilatura.extract(html, include_comments=False, include_tables=True, include_formatting=False,
                               deduplicate=False) or ""
    meta = trafilatura.extract_metadata(html)
    return text, (meta.title if meta else None)


def _looks_wrong(text: str, tree) -> bool:
    """Far too little of a page that shows text that is not mostly links."""
    from resiliparse.extract.html2text import extract_plain_text

    if len(text) >= _SHORT_CHARS:
        return False
    shown = len(extract_plain_text(tree, **_SHOWN))
    if shown < _MIN_SHOWN or len(text) >= _PAGE_RATIO * shown:
        return False
    return len(extract_plain_text(tree, skip_elements=["a"], **_SHOWN)) > (1 - _LINK_LIST) * shown


def _opening_section(h1):
    """The section element that a page's first <h1> (`h1`) opens, when that heading begins the document's text: its
    parent is a section, article or main element and a paragraph follows within _HEADING_SIBLINGS elements (a manual's
    page). None where the heading stands in a header of its own (a news page's headline, over a dek and a byline).
    Walking siblings: listing the parent's children builds every text node, five times the cost."""
    if h1 is None or h1.parent is None or h1.parent.tag not in _SECTIONING:
        return None
    node = h1
    for _ in range(_HEADING_SIBLINGS):
        node = node.next_element
        if node is None:
            return None
        if node.tag == "p":
            return h1.parent
    return None


def _section_text(section) -> str:
    """A document section's whole text, bulleted lists included (Resiliparse's main-content rule drops those whose
    links are over a fifth of their text, and a manual's lists link its terms), without chrome or a table of
    contents."""
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(section.html, preserve_formatting=True, main_content=False, list_bullets=True,
                              skip_elements=CHROME + CONTENTS, **_TEXT_ONLY)


def _hybrid(html: str) -> tuple[str, str | None]:
    """Resiliparse's main content (a manual's whole section, where the page is one) with chrome lines trimmed;
    trafilatura where that looks wrong."""
    tree, title = _parsed(html)
    section = _keep_article_parts(tree)
    text = _main_text(tree)
    if section is not None and len(whole := _section_text(section)) >= _SECTION_SHARE * len(text):
        text = whole
    text = trim_chrome_lines(text, title, heading_is_text=section is not None)
    return (_trafilatura(html)[0] if _looks_wrong(text, tree) else text), title


EXTRACTORS = {
    "hybrid": _hybrid,
    "resiliparse": _resiliparse,
    "trafilatura": _trafilatura,
}


def extract(html: str, extractor: str = "hybrid") -> tuple[str, str | None]:
    """(main text, title) of a page."""
    return EXTRACTORS[extractor](html)


class ExtractionTimeout(Exception):
    """A page whose extraction ran past the limit."""


class ExtractionCrashed(Exception):
    """The child died while extracting a page."""


class SandboxedExtractor:
    """`extractor(html)` → `extract(html, kind)`, computed in a child process within `timeout_s`; use as a context
    manager, which ends the child."""

    def __init__(self, kind: str, timeout_s: float):
        self.kind, self.timeout_s = kind, timeout_s
        self._child: subprocess.Popen | None = None

    def __enter__(self) -> "SandboxedExtractor":
        return self

    def __exit__(self, *exc) -> None:
        self._stop()

    def __call__(self, html: str) -> tuple[str, str | None]:
        child = self._child or self._start()
        body = html.encode("utf-8", "surrogatepass")
        try:
            child.stdin.write(len(body).to_bytes(4, "big") + body)
            child.stdin.flush()
            answer = json.loads(self._read(child, time.monotonic() + self.timeout_s))
        except ExtractionTimeout:
            self._stop()
            raise
        except (BrokenPipeError, EOFError) as err:
            self._stop()
            raise ExtractionCrashed(f"the extractor died on this page ({err or 'no answer'})") from None
        if "error" in answer:
            raise ValueError(answer["error"])
        return answer["text"], answer["title"]

    def _start(self) -> subprocess.Popen:
        self._child = subprocess.Popen([sys.executable, "-m", __name__, self.kind, str(os.getpid())],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            if _read_exactly(self._child, len(_READY), time.monotonic() + _START_S) == _READY:
                return self._child
        except (ExtractionTimeout, EOFError):
            pass
        self._stop()  # the environment's fault, not a page's: the file fails, naming it
        raise RuntimeError(f"main-content extraction ({self.kind}) could not start: run "
                           f"`{sys.executable} -m {__name__} {self.kind} 0` to see why")

    def _read(self, child: subprocess.Popen, deadline: float) -> bytes:
        size = int.from_bytes(_read_exactly(child, 4, deadline), "big")
        return _read_exactly(child, size, deadline)

    def _stop(self) -> None:
        if self._child is not None:
            self._child.kill()
            self._child.wait()
            self._child.stdin.close()
            self._child.stdout.close()
            self._child = None


def _read_exactly(child: subprocess.Popen, n: int, deadline: float) -> bytes:
    """n bytes from the child's stdout, or ExtractionTimeout at the deadline, or EOFError when it ends first."""
    fd, got = child.stdout.fileno(), bytearray()
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while len(got) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise ExtractionTimeout()
            chunk = os.read(fd, n - len(got))
            if not chunk:
                raise EOFError()
            got += chunk
    return bytes(got)


def _serve(kind: str, parent: int) -> None:
    from curate.tasks.engine.lifetime import die_with

    die_with(parent)  # 0: started by hand, to debug
    extract("<p>.</p>", kind)  # the extractor's imports, before any page's time runs
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    out.write(_READY)
    out.flush()
    while len(head := inp.read(4)) == 4:
        html = inp.read(int.from_bytes(head, "big")).decode("utf-8", "surrogatepass")
        try:
            text, title = extract(html, kind)
            answer = {"text": text, "title": title}
        except Exception as err:  # the page's, reported as its reject: the child goes on
            answer = {"error": f"{type(err).__name__}: {err}"[:300]}
        body = json.dumps(answer).encode()
        out.write(len(body).to_bytes(4, "big") + body)
        out.flush()


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
