/* The statistics the quality rules read (tasks/quality_rules.py): words, n-grams, lines and paragraphs. */
#include "textscan.h"

/* ---- words -------------------------------------------------------------------------------------------- */

PyDoc_STRVAR(word_stats_doc,
"word_stats(text) -> (n_words, word_chars, words_with_letter, alnum_chars, symbols, unspaced_words, unspaced_chars)\n\n"
"Over words.words(text) (text.split(), with each letter of an unspaced script a word): how many words, their\n"
"total length, how many hold a letter (str.isalpha); how many characters of the whole text are alphanumeric\n"
"(str.isalnum); Gopher's symbols, text.count('#') + text.count('...') + text.count('\u2026'); and how many of\n"
"the words are an unspaced script's letter (with what follows it), and their length.");

SPECIALISED void word_stats_at(int kind, const Text *src, Py_ssize_t *out) {
    AT_WIDTH(src, kind);
    Py_ssize_t words = 0, chars = 0, with_letter = 0, alnum = 0, symbols = 0, dots = 0, u_words = 0, u_chars = 0;
    int letter = 0;
    WordState ws = {0, 0};
    for (Py_ssize_t i = 0; i < t->len; i++) {
        Py_UCS4 c = CH(t, i);
        if (c == '.') { dots++; } else if (dots) { symbols += dots / 3; dots = 0; }  /* str.count: non-overlapping */
        symbols += c == '#' || c == 0x2026;
        int step = word_step(&ws, c);
        if (step < 0) continue;
        if (step) { words++; letter = 0; u_words += ws.unspaced; }
        chars++;
        u_chars += ws.unspaced;
        unsigned char cls = char_class(c);
        if (cls & C_ALNUM) {
            alnum++;
            if ((cls & C_ALPHA) && !letter) { with_letter++; letter = 1; }
        }
    }
    symbols += dots / 3;
    out[0] = words, out[1] = chars, out[2] = with_letter, out[3] = alnum, out[4] = symbols;
    out[5] = u_words, out[6] = u_chars;
}

static PyObject *word_stats(PyObject *self, PyObject *arg) {
    Text t;
    if (text_of(arg, &t) < 0) return NULL;
    Py_ssize_t r[7];
    BY_KIND(t.kind, word_stats_at, &t, r);
    return Py_BuildValue("nnnnnnn", r[0], r[1], r[2], r[3], r[4], r[5], r[6]);
}

/* Words (words.words(text)) as hashes and lengths, for n-gram statistics. */
typedef struct { uint64_t *hash; uint32_t *len; Py_ssize_t n; } Words;

SPECIALISED void split_words_at(int kind, const Text *src, Words *w) {
    AT_WIDTH(src, kind);
    WordState ws = {0, 0};
    uint64_t h = 0;
    Py_ssize_t start = -1;  /* where the current word began; -1: none */
    for (Py_ssize_t i = 0; i <= t->len; i++) {
        int step = i < t->len ? word_step(&ws, CH(t, i)) : -1;
        if (step != 0 && start >= 0) {  /* the current word ends before i */
            w->hash[w->n] = finalise(h);
            w->len[w->n] = (uint32_t)(i - start);
            w->n++;
            start = -1;
        }
        if (step < 0) continue;
        if (step == 1) { start = i; h = 0xcbf29ce484222325ULL; }
        h = fnv_step(h, CH(t, i));
    }
}

static int split_words(const Text *t, Words *w) {
    Py_ssize_t cap = t->len + 2;  /* every character may be a word of its own */
    w->hash = malloc(cap * sizeof(uint64_t));
    w->len = malloc(cap * sizeof(uint32_t));
    w->n = 0;
    if (!w->hash || !w->len) { free(w->hash); free(w->len); PyErr_NoMemory(); return -1; }
    BY_KIND(t->kind, split_words_at, t, w);
    return 0;
}

static inline uint64_t ngram_key(const Words *w, Py_ssize_t i, int n) {
    uint64_t k = 0;
    for (int j = 0; j < n; j++) k = k * 1000003ULL + w->hash[i + j];
    return finalise(k);
}

PyDoc_STRVAR(top_ngrams_doc,
"top_ngrams(text, ns) -> [(count, chars), ...]\n\n"
"For each n of ns, over the n-grams of words.words(text): the highest occurrence count, and the longest (in\n"
"characters, spaces not counted) of the n-grams with that count; (0, 0) with fewer than n words.");

static PyObject *top_ngrams(PyObject *self, PyObject *args) {
    PyObject *obj, *ns;
    if (!PyArg_ParseTuple(args, "UO!", &obj, &PyTuple_Type, &ns)) return NULL;
    Text t;
    Words w;
    if (text_of(obj, &t) < 0 || split_words(&t, &w) < 0) return NULL;
    PyObject *out = PyList_New(0);
    for (Py_ssize_t k = 0; out && k < PyTuple_GET_SIZE(ns); k++) {
        long n = PyLong_AsLong(PyTuple_GET_ITEM(ns, k));
        if (n < 1) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "n must be >= 1");
            Py_CLEAR(out);
            break;
        }
        Py_ssize_t positions = w.n - n + 1, top = 0, chars = 0;
        Table tb;
        if (positions > 0) {
            if (table_init(&tb, positions) < 0) { Py_CLEAR(out); break; }
            for (Py_ssize_t i = 0; i < positions; i++) {
                size_t s = table_slot(&tb, ngram_key(&w, i, (int)n), (uint32_t)i);
                if (++tb.counts[s] > top) top = tb.counts[s];
            }
            for (size_t s = 0; s <= tb.mask; s++) {
                if (!tb.keys[s] || tb.counts[s] != top) continue;
                Py_ssize_t c = 0;
                for (long j = 0; j < n; j++) c += w.len[tb.firsts[s] + j];
                if (c > chars) chars = c;
            }
            table_free(&tb);
        }
        PyObject *pair = Py_BuildValue("(nn)", top, chars);
        if (!pair || PyList_Append(out, pair) < 0) Py_CLEAR(out);
        Py_XDECREF(pair);
    }
    free(w.hash); free(w.len);
    return out;
}

PyDoc_STRVAR(repeated_ngram_chars_doc,
"repeated_ngram_chars(text, n) -> (chars, word_chars)\n\n"
"Characters of the words inside a repeat (a second or later occurrence) of some n-gram of words.words(text),\n"
"each word counted once; and the characters of all words.");

static PyObject *repeated_ngram_chars(PyObject *self, PyObject *args) {
    PyObject *obj;
    int n;
    if (!PyArg_ParseTuple(args, "Ui", &obj, &n)) return NULL;
    Text t;
    Words w;
    Table tb;
    if (n < 1) { PyErr_SetString(PyExc_ValueError, "n must be >= 1"); return NULL; }
    if (text_of(obj, &t) < 0 || split_words(&t, &w) < 0) return NULL;
    Py_ssize_t positions = w.n - n + 1, covered = 0, total = 0, until = 0;
    for (Py_ssize_t i = 0; i < w.n; i++) total += w.len[i];
    if (positions > 0) {
        if (table_init(&tb, positions) < 0) { free(w.hash); free(w.len); return NULL; }
        for (Py_ssize_t i = 0; i < positions; i++) {
            size_t s = table_slot(&tb, ngram_key(&w, i, n), (uint32_t)i);
            if (tb.counts[s]++ == 0) continue;
            for (Py_ssize_t j = (i > until ? i : until); j < i + n; j++) covered += w.len[j];
            if (i + n > until) until = i + n;
        }
        table_free(&tb);
    }
    free(w.hash); free(w.len);
    return Py_BuildValue("nn", covered, total);
}

PyDoc_STRVAR(count_words_doc,
"count_words(text, words, limit) -> int\n\n"
"How many of words.tokens(text) (maximal runs of re's \\w, each letter of an unspaced script a token of its own)\n"
"equal one of `words` (lower case, at most 15 characters) ignoring ASCII case, counting up to `limit`.");

static PyObject *count_words(PyObject *self, PyObject *args) {
    PyObject *obj, *words;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "UO!n", &obj, &PyTuple_Type, &words, &limit)) return NULL;
    Text t;
    if (text_of(obj, &t) < 0) return NULL;
    Py_UCS4 want[64][16];
    Py_ssize_t wlen[64], nw = PyTuple_GET_SIZE(words), maxlen = 0, count = 0;
    if (nw > 64) { PyErr_SetString(PyExc_ValueError, "at most 64 words"); return NULL; }
    for (Py_ssize_t k = 0; k < nw; k++) {
        Text w;
        if (text_of(PyTuple_GET_ITEM(words, k), &w) < 0) return NULL;
        if (w.len >= 16) { PyErr_SetString(PyExc_ValueError, "words of at most 15 characters"); return NULL; }
        for (Py_ssize_t j = 0; j < w.len; j++) want[k][j] = CH(&w, j);
        wlen[k] = w.len;
        if (w.len > maxlen) maxlen = w.len;
    }
    Py_ssize_t i = 0;
    while (i < t.len && count < limit) {
        Py_UCS4 c = CH(&t, i);
        if (!IS_WORD(c)) { i++; continue; }
        Py_UCS4 buf[16];
        Py_ssize_t m = 0;
        if (IS_UNSPACED_WORD(c)) {
            buf[m++] = c;
            i++;
        } else {
            for (; i < t.len; i++, m++) {
                c = CH(&t, i);
                if (!IS_WORD(c) || IS_UNSPACED_WORD(c)) break;
                if (m < 16) buf[m] = c >= 'A' && c <= 'Z' ? c + 32 : c;
            }
        }
        if (m > maxlen) continue;
        for (Py_ssize_t k = 0; k < nw; k++)
            if (wlen[k] == m && memcmp(buf, want[k], m * sizeof(Py_UCS4)) == 0) { count++; break; }
    }
    return PyLong_FromSsize_t(count);
}

/* ---- lines and paragraphs ----------------------------------------------------------------------------- */

/* The pieces of text.split(sep) (sep is "\n" or "\n\n"), each as [start, end) after str.strip(). */
SPECIALISED Py_ssize_t next_piece(const Text *t, Py_ssize_t from, int sep_len, Py_ssize_t *start, Py_ssize_t *end) {
    Py_ssize_t i = from;
    while (i < t->len && !(CH(t, i) == '\n' && (sep_len == 1 || (i + 1 < t->len && CH(t, i + 1) == '\n')))) i++;
    Py_ssize_t a = from, b = i;
    while (a < b && IS_SPACE(CH(t, a))) a++;
    while (b > a && IS_SPACE(CH(t, b - 1))) b--;
    *start = a;
    *end = b;
    return i < t->len ? i + sep_len : t->len + 1;  /* past the end: no more pieces */
}

PyDoc_STRVAR(line_counts_doc,
"line_counts(text, bullets, terminal, c4_terminal, short_chars, c4_min_words)\n"
"    -> (lines, bullet, ellipsis, terminal, c4_sentences, short)\n\n"
"Over lines = [s for s in (l.strip() for l in text.split('\\n')) if s]: how many; how many start with a\n"
"character of `bullets`; end with '...' or '…'; end with a character of `terminal`; end with one of\n"
"`c4_terminal` and hold at least c4_min_words words (words.words); are at most short_chars long.");

SPECIALISED void line_counts_at(int kind, const Text *src, const Text *bul, const Text *term, const Text *c4,
                                Py_ssize_t short_chars, Py_ssize_t c4_min_words, Py_ssize_t *r) {
    AT_WIDTH(src, kind);
    Py_ssize_t lines = 0, bullet = 0, ellipsis = 0, terminal = 0, sentences = 0, shorts = 0;
    Py_ssize_t pos = 0, a, b;
    while (pos <= t->len) {
        pos = next_piece(t, pos, 1, &a, &b);
        if (a == b) continue;
        lines++;
        Py_UCS4 first = CH(t, a), last = CH(t, b - 1);
        bullet += in_set(first, bul);
        ellipsis += last == 0x2026 || (b - a >= 3 && last == '.' && CH(t, b - 2) == '.' && CH(t, b - 3) == '.');
        terminal += in_set(last, term);
        shorts += (b - a) <= short_chars;
        if (in_set(last, c4)) {
            Py_ssize_t words = 0;
            WordState ws = {0, 0};
            for (Py_ssize_t i = a; i < b && words < c4_min_words; i++) words += word_step(&ws, CH(t, i)) == 1;
            sentences += words >= c4_min_words;
        }
    }
    r[0] = lines, r[1] = bullet, r[2] = ellipsis, r[3] = terminal, r[4] = sentences, r[5] = shorts;
}

static PyObject *line_counts(PyObject *self, PyObject *args) {
    PyObject *obj, *bul_o, *term_o, *c4_o;
    Py_ssize_t short_chars, c4_min_words;
    if (!PyArg_ParseTuple(args, "UUUUnn", &obj, &bul_o, &term_o, &c4_o, &short_chars, &c4_min_words)) return NULL;
    Text t, bul, term, c4;
    if (text_of(obj, &t) < 0 || text_of(bul_o, &bul) < 0 || text_of(term_o, &term) < 0 || text_of(c4_o, &c4) < 0)
        return NULL;
    Py_ssize_t r[6];
    BY_KIND(t.kind, line_counts_at, &t, &bul, &term, &c4, short_chars, c4_min_words, r);
    return Py_BuildValue("nnnnnn", r[0], r[1], r[2], r[3], r[4], r[5]);
}

PyDoc_STRVAR(duplicates_doc,
"duplicates(text, paragraphs) -> (items, repeated, chars, repeated_chars)\n\n"
"Over the stripped, non-empty pieces of text.split('\\n\\n' if paragraphs else '\\n'): how many, how many\n"
"equal an earlier one, their total length, and the length of those that repeat.");

SPECIALISED void duplicates_at(int kind, const Text *src, int paragraphs, Py_ssize_t *r) {
    AT_WIDTH(src, kind);
    Py_ssize_t pieces = 1;
    for (Py_ssize_t i = 0; i < t->len; i++) pieces += CH(t, i) == '\n';
    Table table, *tb = &table;
    if (table_init(tb, pieces) < 0) { r[0] = -1; return; }
    Py_ssize_t items = 0, repeated = 0, chars = 0, repeated_chars = 0, pos = 0, a, b;
    int sep = paragraphs ? 2 : 1;
    while (pos <= t->len) {
        pos = next_piece(t, pos, sep, &a, &b);
        if (a == b) continue;
        /* one document has one width, so equal pieces have equal bytes */
        uint64_t h = finalise(hash_bytes((const char *)t->data + a * kind, (size_t)(b - a) * kind));
        size_t s = table_slot(tb, h, 0);
        items++;
        chars += b - a;
        if (tb->counts[s]++) { repeated++; repeated_chars += b - a; }
    }
    table_free(tb);
    r[0] = items, r[1] = repeated, r[2] = chars, r[3] = repeated_chars;
}

static PyObject *duplicates(PyObject *self, PyObject *args) {
    PyObject *obj;
    int paragraphs;
    if (!PyArg_ParseTuple(args, "Up", &obj, &paragraphs)) return NULL;
    Text t;
    if (text_of(obj, &t) < 0) return NULL;
    Py_ssize_t r[4];
    BY_KIND(t.kind, duplicates_at, &t, paragraphs, r);
    if (r[0] < 0) return NULL;  /* table_init set MemoryError */
    return Py_BuildValue("nnnn", r[0], r[1], r[2], r[3]);
}

PyDoc_STRVAR(longest_line_doc, "longest_line(text) -> int\n\nmax(len(l) for l in text.split('\\n')).");

static PyObject *longest_line(PyObject *self, PyObject *arg) {
    Text t;
    if (text_of(arg, &t) < 0) return NULL;
    Py_ssize_t longest = 0, start = 0;
    for (Py_ssize_t i = 0; i <= t.len; i++) {
        if (i == t.len || CH(&t, i) == '\n') {
            if (i - start > longest) longest = i - start;
            start = i + 1;
        }
    }
    return PyLong_FromSsize_t(longest);
}

PyMethodDef textscan_rule_methods[] = {
    {"word_stats", word_stats, METH_O, word_stats_doc},
    {"top_ngrams", top_ngrams, METH_VARARGS, top_ngrams_doc},
    {"repeated_ngram_chars", repeated_ngram_chars, METH_VARARGS, repeated_ngram_chars_doc},
    {"count_words", count_words, METH_VARARGS, count_words_doc},
    {"line_counts", line_counts, METH_VARARGS, line_counts_doc},
    {"duplicates", duplicates, METH_VARARGS, duplicates_doc},
    {"longest_line", longest_line, METH_O, longest_line_doc},
    {NULL, NULL, 0, NULL},
};
