/* One-pass text statistics for the hot paths of ingest (normalisation) and classify (quality rules, PII).
 *
 * Each function reads a Python str's code points in place and mirrors a Python expression exactly: the
 * docstrings name it, and tests/test_textscan.py checks each one against that expression on real text.
 * Character classes are Python's own (Py_UNICODE_ISSPACE, ISALPHA, ISALNUM, ISDECIMAL), so "whitespace",
 * "letter" and "digit" mean what str.split(), str.isalpha() and re's \d mean. Why C: these statistics were
 * 85% of the classify stage's time in numpy/re, and normalisation a third of ingest's.
 */
#include "textscan.h"

/* ---- normalize --------------------------------------------------------------------------------------- */

static int dropped(Py_UCS4 c) {  /* C0/C1 controls except tab and newline, zero-width space, BOM */
    return (c < 0x20 && c != '\t' && c != '\n') || (c >= 0x7F && c < 0xA0) || c == 0x200B || c == 0xFEFF;
}

/* Whether normalize could change the text: a tight loop per storage width, since most documents need nothing
 * and the full rewrite costs several times more per character. Conservative: a yes is checked by the rewrite. */
#define NEEDS_CHANGE(T)                                                                                     \
    static int needs_change_##T(const T *d, Py_ssize_t n) {                                                 \
        if (n == 0) return 0;                                                                               \
        if (d[0] == ' ' || d[0] == '\t' || d[0] == '\n' || IS_SPACE(d[n - 1])) return 1;                    \
        int newlines = 0;                                                                                   \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                \
            Py_UCS4 c = d[i];                                                                               \
            if (c == '\n') {                                                                                \
                if (d[i - 1] == ' ' || d[i - 1] == '\t' || ++newlines >= 4) return 1;                       \
                continue;                                                                                   \
            }                                                                                               \
            newlines = 0;                                                                                   \
            if (c < 0x20 ? c != '\t' : (c >= 0x7F && (c < 0xA0 || c == 0x200B || c == 0xFEFF))) return 1;  \
        }                                                                                                   \
        return 0;                                                                                           \
    }
NEEDS_CHANGE(Py_UCS1)
NEEDS_CHANGE(Py_UCS2)
NEEDS_CHANGE(Py_UCS4)

PyDoc_STRVAR(normalize_doc,
"normalize(text) -> str\n\n"
"After NFC (done by the caller): CR and CRLF become LF; C0/C1 controls (but tab and LF), U+200B and U+FEFF go;\n"
"spaces and tabs before a line end go; runs of 4+ LF become 3; leading blank lines go (the first line's\n"
"indentation stays); trailing whitespace (str.rstrip()) goes. Returns the same object when nothing changes.");

/* The rewrite, per storage width; the output has the input's width (it only drops characters or turns CR into
 * LF) and its length is returned. Spaces and tabs are held back until text follows them on the line. */
#define REWRITE(T)                                                                                          \
    static Py_ssize_t rewrite_##T(const T *d, Py_ssize_t len, T *out) {                                     \
        Py_ssize_t n = 0, pending = 0, pending_from = 0;                                                    \
        int newlines = 0, at_start = 1;                                                                     \
        for (Py_ssize_t i = 0; i < len; i++) {                                                              \
            Py_UCS4 c = d[i];                                                                               \
            if (c == '\r') {                                                                                \
                c = '\n';                                                                                   \
                if (i + 1 < len && d[i + 1] == '\n') i++;                                                   \
            }                                                                                               \
            if (c != '\n' && dropped(c)) continue;                                                          \
            if (c == ' ' || c == '\t') {                                                                    \
                if (!pending) pending_from = i;                                                             \
                pending++;                                                                                  \
                continue;                                                                                   \
            }                                                                                               \
            if (c == '\n') {                                                                                \
                pending = 0;                            /* trailing spaces of the line */                   \
                if (at_start || ++newlines > 3) continue; /* a leading blank line, or a 4th newline */      \
                out[n++] = '\n';                                                                            \
                continue;                                                                                   \
            }                                                                                               \
            for (Py_ssize_t k = pending_from, w = 0; w < pending; k++) /* skipping dropped characters */    \
                if (d[k] == ' ' || d[k] == '\t') { out[n++] = d[k]; w++; }                                  \
            pending = newlines = at_start = 0;                                                              \
            out[n++] = (T)c;                                                                                \
        }                                                                                                   \
        while (n > 0 && IS_SPACE(out[n - 1])) n--;                                                          \
        return n;                                                                                           \
    }
REWRITE(Py_UCS1)
REWRITE(Py_UCS2)
REWRITE(Py_UCS4)

static PyObject *normalize(PyObject *self, PyObject *arg) {
    Text t;
    if (text_of(arg, &t) < 0) return NULL;
    int maybe = t.kind == PyUnicode_1BYTE_KIND   ? needs_change_Py_UCS1(t.data, t.len)
                : t.kind == PyUnicode_2BYTE_KIND ? needs_change_Py_UCS2(t.data, t.len)
                                                 : needs_change_Py_UCS4(t.data, t.len);
    if (!maybe) { Py_INCREF(arg); return arg; }
    void *out = PyMem_Malloc((t.len + 1) * t.kind);
    if (!out) return PyErr_NoMemory();
    Py_ssize_t n = t.kind == PyUnicode_1BYTE_KIND   ? rewrite_Py_UCS1(t.data, t.len, out)
                   : t.kind == PyUnicode_2BYTE_KIND ? rewrite_Py_UCS2(t.data, t.len, out)
                                                    : rewrite_Py_UCS4(t.data, t.len, out);
    PyObject *res;
    if (n == t.len && memcmp(out, t.data, n * t.kind) == 0) {  /* the pre-scan was cautious: nothing changed */
        Py_INCREF(arg);
        res = arg;
    } else {
        res = PyUnicode_FromKindAndData(t.kind, out, n);  /* narrows the width if the widest characters went */
    }
    PyMem_Free(out);
    return res;
}

/* ---- PII anchors -------------------------------------------------------------------------------------- */

static int digit_run_char(Py_UCS4 c) {
    return IS_DECIMAL(c) || c == ' ' || c == '.' || c == '(' || c == ')' || c == '-';
}

PyDoc_STRVAR(digit_runs_doc,
"digit_runs(text, min_digits, min_dots) -> [(start, end), ...]\n\n"
"The matches of re.finditer(r'\\d[\\d .()\\-]{5,}\\d', text) that hold at least min_digits digits or at\n"
"least min_dots dots: where an IP address, phone or card number could be.");

static PyObject *digit_runs(PyObject *self, PyObject *args) {
    PyObject *obj;
    Py_ssize_t min_digits, min_dots;
    if (!PyArg_ParseTuple(args, "Unn", &obj, &min_digits, &min_dots)) return NULL;
    Text t;
    if (text_of(obj, &t) < 0) return NULL;
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    Py_ssize_t i = 0;
    while (i < t.len) {
        if (!IS_DECIMAL(CH(&t, i))) { i++; continue; }
        /* a maximal run of run characters starting at this digit; the match ends at its last digit */
        Py_ssize_t start = i, last = i, digits = 0, dots = 0, digits_to_last = 0, dots_to_last = 0;
        for (; i < t.len; i++) {
            Py_UCS4 c = CH(&t, i);
            if (!digit_run_char(c)) break;
            if (IS_DECIMAL(c)) { digits++; last = i; digits_to_last = digits; dots_to_last = dots; }
            else if (c == '.') dots++;
        }
        if (last - start + 1 >= 7 && (digits_to_last >= min_digits || dots_to_last >= min_dots)) {
            PyObject *span = Py_BuildValue("(nn)", start, last + 1);
            if (!span || PyList_Append(out, span) < 0) { Py_XDECREF(span); Py_DECREF(out); return NULL; }
            Py_DECREF(span);
        }
    }
    return out;
}

PyDoc_STRVAR(contains_any_doc,
"contains_any(text, needles) -> bool\n\nany(n in text for n in needles), in one pass over the text.");

SPECIALISED void contains_any_at(int kind, const Text *src, const Text *nd, Py_ssize_t nn, uint32_t pairs[256][8],
                                 int wide_start, int *found) {
    AT_WIDTH(src, kind);
    for (Py_ssize_t i = 0; i + 1 < t->len || (wide_start && i < t->len); i++) {
        Py_UCS4 c = CH(t, i), d = i + 1 < t->len ? CH(t, i + 1) : 0;
        if (!wide_start && (c >= 256 || d >= 256 || !(pairs[c][d >> 5] >> (d & 31) & 1))) continue;
        for (Py_ssize_t k = 0; k < nn; k++) {
            if (i + nd[k].len > t->len) continue;
            Py_ssize_t j = 0;
            while (j < nd[k].len && CH(t, i + j) == CH(&nd[k], j)) j++;
            if (j == nd[k].len) { *found = 1; return; }
        }
    }
}

static PyObject *contains_any(PyObject *self, PyObject *args) {
    PyObject *obj, *needles;
    if (!PyArg_ParseTuple(args, "UO!", &obj, &PyTuple_Type, &needles)) return NULL;
    Text t, nd[32];
    Py_ssize_t nn = PyTuple_GET_SIZE(needles);
    if (nn > 32) { PyErr_SetString(PyExc_ValueError, "at most 32 needles"); return NULL; }
    if (text_of(obj, &t) < 0) return NULL;
    for (Py_ssize_t k = 0; k < nn; k++) {
        if (text_of(PyTuple_GET_ITEM(needles, k), &nd[k]) < 0) return NULL;
        if (nd[k].len == 0) Py_RETURN_TRUE;
    }
    /* which pairs of characters can start a needle (both Latin-1; a wider first pair is always checked) */
    uint32_t pairs[256][8] = {{0}};
    int wide_start = 0;
    for (Py_ssize_t k = 0; k < nn; k++) {
        Py_UCS4 f = CH(&nd[k], 0), s = nd[k].len > 1 ? CH(&nd[k], 1) : 0;
        if (f >= 256 || s >= 256 || nd[k].len == 1) { wide_start = 1; continue; }
        pairs[f][s >> 5] |= 1u << (s & 31);
    }
    int found = 0;
    BY_KIND(t.kind, contains_any_at, &t, nd, nn, pairs, wide_start, &found);
    return PyBool_FromLong(found);
}

/* ---- tokens for shingles and n-grams -------------------------------------------------------------------- */

PyDoc_STRVAR(token_hashes_doc,
"token_hashes(text, mults, len_mult) -> bytes\n\n"
"For each of words.tokens(text) (maximal runs of re's \\w, each letter of an unspaced script a token of its\n"
"own; text already lower-cased), a little-endian uint64: sum(ord(tok[k]) * mults[k] for k < len(mults)) +\n"
"len(tok) * len_mult, mod 2**64 (mults: len(mults) uint64 as bytes). What words.token_hashes computes in numpy.");

#define MAX_MULTS 64

SPECIALISED Py_ssize_t token_hashes_at(int kind, const Text *src, const uint64_t *mult, Py_ssize_t nmult,
                                       uint64_t len_mult, uint64_t *out) {
    AT_WIDTH(src, kind);
    Py_ssize_t n = 0, i = 0;
    while (i < t->len) {
        Py_UCS4 c = CH(t, i);
        if (!IS_WORD(c)) { i++; continue; }
        uint64_t h = 0;
        Py_ssize_t m = 0;
        if (IS_UNSPACED_WORD(c)) {
            h = (uint64_t)c * mult[0];
            m = 1;
            i++;
        } else {
            for (; i < t->len; i++, m++) {
                c = CH(t, i);
                if (!IS_WORD(c) || IS_UNSPACED_WORD(c)) break;
                if (m < nmult) h += (uint64_t)c * mult[m];
            }
        }
        out[n++] = h + (uint64_t)m * len_mult;
    }
    return n;
}

static PyObject *token_hashes(PyObject *self, PyObject *args) {
    PyObject *obj;
    Py_buffer mults;
    unsigned long long len_mult;
    if (!PyArg_ParseTuple(args, "Uy*K", &obj, &mults, &len_mult)) return NULL;
    Text t;
    Py_ssize_t nmult = mults.len / 8;
    if (text_of(obj, &t) < 0 || nmult < 1 || nmult > MAX_MULTS) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "mults: 1 to 64 uint64 values as bytes");
        PyBuffer_Release(&mults);
        return NULL;
    }
    uint64_t mult[MAX_MULTS];
    memcpy(mult, mults.buf, nmult * 8);
    PyBuffer_Release(&mults);
    PyObject *res = PyBytes_FromStringAndSize(NULL, (t.len + 1) * 8);  /* at most a token a character */
    if (!res) return NULL;
    uint64_t *out = (uint64_t *)PyBytes_AS_STRING(res);
    Py_ssize_t n;
    BY_KIND(t.kind, n = token_hashes_at, &t, mult, nmult, (uint64_t)len_mult, out);
    if (_PyBytes_Resize(&res, n * 8) < 0) return NULL;
    return res;
}

static PyMethodDef own_methods[] = {
    {"token_hashes", token_hashes, METH_VARARGS, token_hashes_doc},
    {"normalize", normalize, METH_O, normalize_doc},
    {"digit_runs", digit_runs, METH_VARARGS, digit_runs_doc},
    {"contains_any", contains_any, METH_VARARGS, contains_any_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_textscan",
                                    "One-pass text statistics for normalisation, quality rules and PII.", -1, NULL};

unsigned char textscan_latin1[256];

PyMODINIT_FUNC PyInit__textscan(void) {
    for (Py_UCS4 c = 0; c < 256; c++)
        textscan_latin1[c] = (Py_UNICODE_ISSPACE(c) ? C_SPACE : 0) | (Py_UNICODE_ISALPHA(c) ? C_ALPHA : 0) |
                             (Py_UNICODE_ISALNUM(c) ? C_ALNUM : 0) | (Py_UNICODE_ISDECIMAL(c) ? C_DECIMAL : 0);
    PyObject *m = PyModule_Create(&module);
    if (m && (PyModule_AddFunctions(m, own_methods) < 0 || PyModule_AddFunctions(m, textscan_rule_methods) < 0))
        Py_CLEAR(m);
    return m;
}
