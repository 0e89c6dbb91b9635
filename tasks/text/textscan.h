/* Shared by the _textscan sources: reading a str's code points, Python's character classes, hashing and a
 * small open-addressing table. */
#ifndef TEXTSCAN_H
#define TEXTSCAN_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int kind;
    const void *data;
    Py_ssize_t len;
} Text;

static inline int text_of(PyObject *obj, Text *t) {
    if (!PyUnicode_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "expected a str");
        return -1;
    }
    t->kind = PyUnicode_KIND(obj);
    t->data = PyUnicode_DATA(obj);
    t->len = PyUnicode_GET_LENGTH(obj);
    return 0;
}

#define CH(t, i) PyUnicode_READ((t)->kind, (t)->data, (i))

/* Per storage width: BY_KIND(kind, fn, args...) calls fn(1|2|4, args...), and a SPECIALISED fn(kind, src, ...) that
 * starts with AT_WIDTH(src, kind) reads src's characters with the width as a constant, so the compiler drops the
 * per-character switch of PyUnicode_READ (most documents are 1 byte wide and take the tightest loop). */
#define SPECIALISED static inline __attribute__((always_inline))
#define AT_WIDTH(src, k)       \
    Text at_width_ = *(src);   \
    at_width_.kind = (k);      \
    const Text *t = &at_width_
#define BY_KIND(k, fn, ...)                                                                                 \
    do {                                                                                                    \
        if ((k) == PyUnicode_1BYTE_KIND) fn(PyUnicode_1BYTE_KIND, __VA_ARGS__);                             \
        else if ((k) == PyUnicode_2BYTE_KIND) fn(PyUnicode_2BYTE_KIND, __VA_ARGS__);                        \
        else fn(PyUnicode_4BYTE_KIND, __VA_ARGS__);                                                         \
    } while (0)
/* Below 256 from a table (filled from Python's own predicates at import): they are function calls otherwise,
 * and nearly every character here is Latin-1. */
enum { C_SPACE = 1, C_ALPHA = 2, C_ALNUM = 4, C_DECIMAL = 8 };
extern unsigned char textscan_latin1[256];
#define IS_SPACE(c) ((c) < 256 ? textscan_latin1[c] & C_SPACE : Py_UNICODE_ISSPACE(c))
#define IS_DECIMAL(c) ((c) < 256 ? textscan_latin1[c] & C_DECIMAL : Py_UNICODE_ISDECIMAL(c))
#define IS_ALPHA(c) ((c) < 256 ? textscan_latin1[c] & C_ALPHA : Py_UNICODE_ISALPHA(c))
#define IS_ALNUM(c) ((c) < 256 ? textscan_latin1[c] & C_ALNUM : Py_UNICODE_ISALNUM(c))
#define IS_WORD(c) (IS_ALNUM(c) || (c) == '_')
/* All four classes of c at once. */
static inline unsigned char char_class(Py_UCS4 c) {
    if (c < 256) return textscan_latin1[c];
    return (Py_UNICODE_ISSPACE(c) ? C_SPACE : 0) | (Py_UNICODE_ISALPHA(c) ? C_ALPHA : 0) |
           (Py_UNICODE_ISALNUM(c) ? C_ALNUM : 0) | (Py_UNICODE_ISDECIMAL(c) ? C_DECIMAL : 0);
}

/* ---- words per script: tasks/text/words.py says the same in Python ------------------------------------ */

/* Scripts written without spaces between words: Thai, Lao, Myanmar, Khmer, Kana, Han. */
static inline int is_unspaced(Py_UCS4 c) {
    if (c < 0x0E00) return 0;
    return c <= 0x0EFF || (c >= 0x1000 && c <= 0x109F) || (c >= 0x1780 && c <= 0x17FF) ||
           (c >= 0x3040 && c <= 0x30FF) || (c >= 0x31F0 && c <= 0x31FF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0xF900 && c <= 0xFAFF) || (c >= 0xFF66 && c <= 0xFF9F) ||
           (c >= 0x20000 && c <= 0x2FA1F);
}
/* A letter or digit of such a script: a word (and a token) of its own. */
#define IS_UNSPACED_WORD(c) ((c) >= 0x0E00 && is_unspaced(c) && IS_ALNUM(c))

/* The quality rules' words: text.split(), where a letter of an unspaced script starts a word of its own, and so
 * does a letter or digit after such a word (marks and punctuation stay with the word before them). */
typedef struct { int inside, unspaced; } WordState;
/* 1: c starts a word; 0: c goes on the current one; -1: c is white space. */
static inline int word_step(WordState *s, Py_UCS4 c) {
    if (IS_SPACE(c)) { s->inside = 0; return -1; }
    int u = IS_UNSPACED_WORD(c);
    if (!s->inside || u || (s->unspaced && IS_ALNUM(c))) { s->inside = 1; s->unspaced = u; return 1; }
    return 0;
}

static inline int in_set(Py_UCS4 c, const Text *set) {
    for (Py_ssize_t k = 0; k < set->len; k++)
        if (CH(set, k) == c) return 1;
    return 0;
}

/* ---- hashing: FNV-1a over code points, finalised by splitmix64 for table spread -------------------- */

static inline uint64_t fnv_step(uint64_t h, Py_UCS4 c) { return (h ^ (uint64_t)c) * 0x100000001b3ULL; }
/* Bytes eight at a time (serial FNV per character was most of the cost of hashing long lines); the length
 * goes in, so "a" and "a\0" differ. */
static inline uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    if (i < n) {
        uint64_t w = 0;
        memcpy(&w, p + i, n - i);
        h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 29;
    }
    return h;
}
static inline uint64_t finalise(uint64_t x) {
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27; x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x ? x : 1;  /* 0 marks an empty slot */
}

typedef struct {
    uint64_t *keys;
    uint32_t *counts;
    uint32_t *firsts;
    size_t mask;
} Table;

static inline int table_init(Table *tb, size_t items) {
    size_t cap = 16;
    while (cap < items * 2) cap <<= 1;
    tb->keys = calloc(cap, sizeof(uint64_t));
    tb->counts = calloc(cap, sizeof(uint32_t));
    tb->firsts = malloc(cap * sizeof(uint32_t));
    tb->mask = cap - 1;
    if (!tb->keys || !tb->counts || !tb->firsts) {
        free(tb->keys); free(tb->counts); free(tb->firsts);
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static inline void table_free(Table *tb) { free(tb->keys); free(tb->counts); free(tb->firsts); }

/* The slot of key, inserted (count 0, first = pos) when new. */
static inline size_t table_slot(Table *tb, uint64_t key, uint32_t pos) {
    size_t i = key & tb->mask;
    while (tb->keys[i] && tb->keys[i] != key) i = (i + 1) & tb->mask;
    if (!tb->keys[i]) { tb->keys[i] = key; tb->firsts[i] = pos; }
    return i;
}

/* textscan_rules.c: the quality-rule statistics, ended by a {NULL} entry */
extern PyMethodDef textscan_rule_methods[];

#endif
