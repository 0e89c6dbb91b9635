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
/* Below 256 from a table (filled from Python's own predicates at import): they are function calls otherwise,
 * and nearly every character here is Latin-1. */
enum { C_SPACE = 1, C_ALPHA = 2, C_ALNUM = 4, C_DECIMAL = 8 };
extern unsigned char textscan_latin1[256];
#define IS_SPACE(c) ((c) < 256 ? textscan_latin1[c] & C_SPACE : Py_UNICODE_ISSPACE(c))
#define IS_DECIMAL(c) ((c) < 256 ? textscan_latin1[c] & C_DECIMAL : Py_UNICODE_ISDECIMAL(c))
#define IS_ALPHA(c) ((c) < 256 ? textscan_latin1[c] & C_ALPHA : Py_UNICODE_ISALPHA(c))
#define IS_ALNUM(c) ((c) < 256 ? textscan_latin1[c] & C_ALNUM : Py_UNICODE_ISALNUM(c))
#define IS_WORD(c) (IS_ALNUM(c) || (c) == '_')

static inline int in_set(Py_UCS4 c, const Text *set) {
    for (Py_ssize_t k = 0; k < set->len; k++)
        if (CH(set, k) == c) return 1;
    return 0;
}

/* ---- hashing: FNV-1a over code points, finalised by splitmix64 for table spread -------------------- */

static inline uint64_t fnv_step(uint64_t h, Py_UCS4 c) { return (h ^ (uint64_t)c) * 0x100000001b3ULL; }
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
