/* A Result's stored bytes in C: msgpack.packb(result.to_wire(), use_bin_type=True) and
 * msgpack.packb(result.fee.to_wire(), ...), byte for byte (engine/model.py's
 * Result.to_wire is the reference; tests/engine/test_result_bytes.py compares the two on
 * generated Results). Every executor packs every Result it answers and the commit every
 * one it runs: built in Python, the wire map and its packing cost more than the
 * transfer they record (docs/HOT_PATH.md). Only the exact builtin types the engine builds
 * are packed here: a Result with call sets (ABI 1.1 calls), a field of any other type
 * (a subclass, a memoryview, a mapping that is not a dict) or nested deeper than
 * MAX_DEPTH is left to the Python path, which decides its bytes or its error:
 * pack_result returns None for it. */

#include "native.h"

#include <string.h>

#define MAX_DEPTH 32 /* deeper is left to the Python path (a Result nests 4 deep) */

typedef struct {
    char *buf;
    Py_ssize_t len, cap;
    bool unsupported; /* set, with -1 returned and no exception: the Python path packs it */
} Out;

static int unsupported(Out *o) {
    o->unsupported = true;
    return -1;
}

static int reserve(Out *o, Py_ssize_t n) {
    if (o->len + n <= o->cap)
        return 0;
    Py_ssize_t cap = o->cap ? o->cap : 512;
    while (cap < o->len + n)
        cap *= 2;
    char *buf = PyMem_Realloc(o->buf, (size_t)cap);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    o->buf = buf;
    o->cap = cap;
    return 0;
}

static int put(Out *o, const void *data, Py_ssize_t n) {
    if (reserve(o, n) < 0)
        return -1;
    memcpy(o->buf + o->len, data, (size_t)n);
    o->len += n;
    return 0;
}

/* A tag and `width` big-endian bytes of `v` (width 0: the tag alone). */
static int put_tagged(Out *o, uint8_t tag, uint64_t v, int width) {
    uint8_t b[9];
    b[0] = tag;
    for (int i = 0; i < width; i++)
        b[1 + i] = (uint8_t)(v >> (8 * (width - 1 - i)));
    return put(o, b, 1 + width);
}

/* A length-prefixed header: the fix form below `fix_limit`, else the 8/16/32-bit ones
 * (tag8 0: no 8-bit form, as for arrays and maps). */
static int put_header(Out *o, Py_ssize_t n, uint8_t fix, Py_ssize_t fix_limit, uint8_t tag8,
                      uint8_t tag16, uint8_t tag32) {
    if (n < fix_limit)
        return put_tagged(o, (uint8_t)(fix | n), 0, 0);
    if (tag8 && n < 256)
        return put_tagged(o, tag8, (uint64_t)n, 1);
    if (n < 65536)
        return put_tagged(o, tag16, (uint64_t)n, 2);
    if ((uint64_t)n > 0xffffffffULL) {
        PyErr_SetString(PyExc_ValueError, "object too large to pack");
        return -1;
    }
    return put_tagged(o, tag32, (uint64_t)n, 4);
}

static int pack_int(Out *o, PyObject *v) {
    int overflow = 0;
    long long d = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (d == -1 && PyErr_Occurred())
        return -1;
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(v);
        if (u == (unsigned long long)-1 && PyErr_Occurred())
            return -1;
        return put_tagged(o, 0xcf, u, 8);
    }
    if (overflow < 0) {
        PyErr_SetString(PyExc_OverflowError, "Integer value out of range");
        return -1;
    }
    if (d < -(1LL << 5)) {
        if (d < -(1LL << 15))
            return d < -(1LL << 31) ? put_tagged(o, 0xd3, (uint64_t)d, 8)
                                    : put_tagged(o, 0xd2, (uint64_t)d, 4);
        return d < -(1LL << 7) ? put_tagged(o, 0xd1, (uint64_t)d, 2)
                               : put_tagged(o, 0xd0, (uint64_t)d, 1);
    }
    if (d < (1LL << 7))
        return put_tagged(o, (uint8_t)(int8_t)d, 0, 0);
    if (d < (1LL << 16))
        return d < (1LL << 8) ? put_tagged(o, 0xcc, (uint64_t)d, 1)
                              : put_tagged(o, 0xcd, (uint64_t)d, 2);
    return d < (1LL << 32) ? put_tagged(o, 0xce, (uint64_t)d, 4)
                           : put_tagged(o, 0xcf, (uint64_t)d, 8);
}

static int pack_bin(Out *o, const char *data, Py_ssize_t n) {
    if (put_header(o, n, 0, 0, 0xc4, 0xc5, 0xc6) < 0)
        return -1;
    return put(o, data, n);
}

static int pack_str(Out *o, PyObject *v) {
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(v, &n);
    if (s == NULL || put_header(o, n, 0xa0, 32, 0xd9, 0xda, 0xdb) < 0)
        return -1;
    return put(o, s, n);
}

static int pack_obj(Out *o, PyObject *v, int depth);

static int pack_items(Out *o, PyObject *items, int depth) {
    Py_ssize_t n = PyList_GET_SIZE(items);
    if (put_header(o, n, 0x80, 16, 0, 0xde, 0xdf) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *kv = PyList_GET_ITEM(items, i);
        if (pack_obj(o, PyTuple_GET_ITEM(kv, 0), depth) < 0 ||
            pack_obj(o, PyTuple_GET_ITEM(kv, 1), depth) < 0)
            return -1;
    }
    return 0;
}

/* A dict as `dict(sorted(d.items()))` packs. */
static int pack_sorted(Out *o, PyObject *d, int depth) {
    if (!PyDict_CheckExact(d))
        return unsupported(o);
    PyObject *items = PyDict_Items(d);
    if (items == NULL)
        return -1;
    int rc = PyList_Sort(items) < 0 ? -1 : pack_items(o, items, depth);
    Py_DECREF(items);
    return rc;
}

static int pack_obj(Out *o, PyObject *v, int depth) {
    if (depth > MAX_DEPTH)
        return unsupported(o);
    if (v == Py_None)
        return put_tagged(o, 0xc0, 0, 0);
    if (PyBool_Check(v))
        return put_tagged(o, v == Py_True ? 0xc3 : 0xc2, 0, 0);
    if (PyLong_CheckExact(v))
        return pack_int(o, v);
    if (PyFloat_CheckExact(v)) {
        double x = PyFloat_AS_DOUBLE(v);
        uint64_t bits;
        memcpy(&bits, &x, sizeof bits);
        return put_tagged(o, 0xcb, bits, 8);
    }
    if (PyBytes_CheckExact(v))
        return pack_bin(o, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
    if (PyByteArray_CheckExact(v))
        return pack_bin(o, PyByteArray_AS_STRING(v), PyByteArray_GET_SIZE(v));
    if (PyUnicode_CheckExact(v))
        return pack_str(o, v);
    if (PyList_CheckExact(v) || PyTuple_CheckExact(v)) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(v);
        PyObject **items = PySequence_Fast_ITEMS(v);
        if (put_header(o, n, 0x90, 16, 0, 0xdc, 0xdd) < 0)
            return -1;
        for (Py_ssize_t i = 0; i < n; i++)
            if (pack_obj(o, items[i], depth + 1) < 0)
                return -1;
        return 0;
    }
    if (PyDict_CheckExact(v)) {
        PyObject *items = PyDict_Items(v);
        if (items == NULL)
            return -1;
        int rc = pack_items(o, items, depth + 1);
        Py_DECREF(items);
        return rc;
    }
    return unsupported(o);
}

/* The attributes read, as interned strings made once (PyObject_GetAttrString would make
 * a new one per read). */
enum { A_TX_ID, A_STATUS, A_RETURN_DATA, A_ERROR, A_FEE, A_EVENTS, A_LOGS, A_READ_SET,
       A_WRITE_SET, A_WORKER, A_TIMINGS, A_JOB, A_LIMIT, A_USED, A_BREAKDOWN, A_SCHEDULE,
       A_CALL_READ_SETS, A_CALL_WRITE_SETS, A_CALL_EVENTS, NATTR };
static const char *const ATTR_NAMES[NATTR] = {
    "tx_id", "status", "return_data", "error", "fee", "events", "logs", "read_set",
    "write_set", "worker", "timings", "job", "limit", "used", "breakdown", "schedule",
    "call_read_sets", "call_write_sets", "call_events"};
static PyObject *attrs[NATTR];

static int intern_attrs(void) {
    if (attrs[NATTR - 1] != NULL)
        return 0;
    for (int i = 0; i < NATTR; i++)
        if (attrs[i] == NULL && (attrs[i] = PyUnicode_InternFromString(ATTR_NAMES[i])) == NULL)
            return -1;
    return 0;
}

static PyObject *attr(PyObject *obj, int which) {
    return PyObject_GetAttr(obj, attrs[which]);
}

static int pack_key(Out *o, const char *key) {
    size_t n = strlen(key);
    return put_tagged(o, (uint8_t)(0xa0 | n), 0, 0) < 0 ? -1 : put(o, key, (Py_ssize_t)n);
}

/* The key `name` and the attribute of that name, as it is or (`sorted`) as a sorted dict. */
static int pack_field(Out *o, PyObject *obj, int which, int sorted) {
    PyObject *v = attr(obj, which);
    if (v == NULL)
        return -1;
    int rc = pack_key(o, ATTR_NAMES[which]) < 0 ? -1
             : sorted                          ? pack_sorted(o, v, 1)
                                               : pack_obj(o, v, 1);
    Py_DECREF(v);
    return rc;
}

/* FeeReport.to_wire: limit, used, refunded (= limit - used), breakdown sorted, schedule. */
static int pack_fee(Out *o, PyObject *fee) {
    PyObject *limit = attr(fee, A_LIMIT);
    PyObject *used = attr(fee, A_USED);
    PyObject *refunded = limit && used ? PyNumber_Subtract(limit, used) : NULL;
    int rc = -1;
    if (refunded != NULL && put_tagged(o, 0x85, 0, 0) == 0 && pack_key(o, "limit") == 0 &&
        pack_obj(o, limit, 1) == 0 && pack_key(o, "used") == 0 && pack_obj(o, used, 1) == 0 &&
        pack_key(o, "refunded") == 0 && pack_obj(o, refunded, 1) == 0 &&
        pack_field(o, fee, A_BREAKDOWN, 1) == 0 && pack_field(o, fee, A_SCHEDULE, 0) == 0)
        rc = 0;
    Py_XDECREF(limit);
    Py_XDECREF(used);
    Py_XDECREF(refunded);
    return rc;
}

static int pack_events(Out *o, PyObject *result) {
    PyObject *events = attr(result, A_EVENTS);
    if (events == NULL)
        return -1;
    int rc = -1;
    if (!PyList_CheckExact(events)) {
        unsupported(o);
    } else if (pack_key(o, "events") == 0 &&
               put_header(o, PyList_GET_SIZE(events), 0x90, 16, 0, 0xdc, 0xdd) == 0) {
        rc = 0;
        for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(events); i++) {
            PyObject *e = PyList_GET_ITEM(events, i);
            if (!(PyTuple_CheckExact(e) || PyList_CheckExact(e)) ||
                PySequence_Fast_GET_SIZE(e) != 2) {
                rc = unsupported(o);
            } else {
                PyObject **pair = PySequence_Fast_ITEMS(e);
                rc = put_tagged(o, 0x92, 0, 0) == 0 && pack_obj(o, pair[0], 2) == 0 &&
                     pack_obj(o, pair[1], 2) == 0 ? 0 : -1;
            }
        }
    }
    Py_DECREF(events);
    return rc;
}

/* Whether any of the Result's call sets (ABI 1.1 calls) holds something: -1 on error. */
static int has_calls(PyObject *result) {
    for (int i = A_CALL_READ_SETS; i <= A_CALL_EVENTS; i++) {
        PyObject *v = attr(result, i);
        if (v == NULL)
            return -1;
        int truth = PyObject_IsTrue(v);
        Py_DECREF(v);
        if (truth != 0)
            return truth;
    }
    return 0;
}

PyObject *pack_result(PyObject *self, PyObject *result) {
    (void)self;
    if (intern_attrs() < 0)
        return NULL;
    int calls = has_calls(result);
    if (calls < 0)
        return NULL;
    if (calls)
        Py_RETURN_NONE;
    Out out = {0}, fees = {0};
    PyObject *reply = NULL, *fee = NULL, *job = attr(result, A_JOB);
    int with_job = job ? PyObject_IsTrue(job) : -1;
    if (with_job < 0 || (fee = attr(result, A_FEE)) == NULL || pack_fee(&fees, fee) < 0)
        goto done;
    if (put_tagged(&out, (uint8_t)(0x80 | (11 + with_job)), 0, 0) < 0 ||
        pack_field(&out, result, A_TX_ID, 0) < 0 || pack_field(&out, result, A_STATUS, 0) < 0 ||
        pack_field(&out, result, A_RETURN_DATA, 0) < 0 ||
        pack_field(&out, result, A_ERROR, 0) < 0 || pack_key(&out, "fee") < 0 ||
        put(&out, fees.buf, fees.len) < 0 || pack_events(&out, result) < 0 ||
        pack_field(&out, result, A_LOGS, 0) < 0 || pack_field(&out, result, A_READ_SET, 1) < 0 ||
        pack_field(&out, result, A_WRITE_SET, 1) < 0 ||
        pack_field(&out, result, A_WORKER, 0) < 0 || pack_field(&out, result, A_TIMINGS, 0) < 0)
        goto done;
    if (with_job && (pack_key(&out, "job") < 0 || pack_obj(&out, job, 1) < 0))
        goto done;
    reply = Py_BuildValue("(y#y#)", out.buf, out.len, fees.buf, fees.len);
done:
    if (reply == NULL && (out.unsupported || fees.unsupported) && !PyErr_Occurred()) {
        reply = Py_None;
        Py_INCREF(reply);
    }
    PyMem_Free(out.buf);
    PyMem_Free(fees.buf);
    Py_XDECREF(job);
    Py_XDECREF(fee);
    return reply;
}
