"""Main-content extraction (`extract`), and the same in a child process under a time limit per page.

Extraction is C++ (resiliparse) or lxml under trafilatura: a page can take minutes, and neither a signal nor a
thread can stop code that never returns to Python. So the reader hands each page to a child process of its own and
waits at most `timeout_s` for the answer; a page that takes longer is a `timeout` reject, the child is killed and a
fresh one started for the next page (datatrove's extractors sandbox theirs the same way). A child that dies on a page
(a crash in the extractor) makes that page a `malformed_record` reject, and the next page gets a fresh child too.

The pipe carries a 4-byte length and then the page (UTF-8) one way, and a length and a JSON answer the other.
"""
from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time

_READY = b"ready\n"
_START_S = 120  # importing the extractor on a loaded machine: not counted against a page


# Page chrome Resiliparse's main-content heuristic can leave in: navigation bars (PostgreSQL's "Prev Up Home Next"
# tables), site headers and footers, sidebars, breadcrumbs, tables of contents and menus.
CHROME = ["nav", "header", "footer", "aside", '[role="navigation"]', '[role="banner"]', '[role="contentinfo"]',
          ".navheader", ".navfooter", '[class*="breadcrumb"]', '[class*="sidebar"]', '[id*="sidebar"]',
          '[class*="toc"]', '[id*="toc"]', '[class*="menu"]', '[id*="menu"]']


def extract(html: str, extractor: str = "resiliparse") -> tuple[str, str | None]:
    """(main text, title) of a page."""
    if extractor == "trafilatura":
        import trafilatura

        text = trafilatura.extract(html, include_comments=False, include_tables=True, include_formatting=False,
                                   deduplicate=False) or ""
        meta = trafilatura.extract_metadata(html)
        return text, (meta.title if meta else None)
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    tree = HTMLTree.parse(html)
    title = tree.title or None  # before extraction, which may remove nodes
    text = extract_plain_text(tree, preserve_formatting=True, main_content=True, list_bullets=True, alt_texts=False,
                              links=False, form_fields=False, noscript=False, comments=False, skip_elements=CHROME)
    return text, title


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


def _die_with(parent: int) -> None:
    """End this child when the process that started it ends (Linux), however that happens."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if parent and os.getppid() != parent:  # it ended before the line above (0: started by hand, to debug)
        os._exit(0)


def _serve(kind: str, parent: int) -> None:
    _die_with(parent)
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
