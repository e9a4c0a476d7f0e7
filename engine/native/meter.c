/* Execution: the fee meter (engine/fees.py FeeMeter), fuel settlement and bounds-checked
 * linear-memory access (engine/execution.py), as a Python type the runtime drives. */

#include "native.h"

#include <stdarg.h>
#include <structmember.h>

const char *const CATEGORY_NAMES[NCAT] = {
    "instructions", "host_calls", "io_bytes", "storage_read", "storage_write",
    "events", "hashing", "signatures", "calls", "memory", "table", "execution",
};

const char *const CAPABILITY_NAMES[NCAP] = {
    "io", "state-read", "state-write", "events", "context", "crypto", "debug", "calls",
};

#define PAGE 65536u

/* -- errors: each becomes the execution's pending exception -------------------------- */

static void keep(Execution *ex, PyObject *exc) {
    if (exc == NULL) { /* building the exception failed: keep that failure instead */
        ex_keep_python_error(ex);
        return;
    }
    Py_XSETREF(ex->pending, exc);
}

int ex_keep_python_error(Execution *ex) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value != NULL && tb != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    if (value == NULL)
        value = PyObject_CallFunction(InternalError, "s", "host function failed");
    Py_XSETREF(ex->pending, value);
    return -1;
}

int ex_trap(Execution *ex, const char *kind, const char *format, ...) {
    va_list args;
    va_start(args, format);
    PyObject *message = PyUnicode_FromFormatV(format, args);
    va_end(args);
    if (message == NULL)
        return ex_keep_python_error(ex);
    keep(ex, PyObject_CallFunction(ContractTrap, "Os", message, kind));
    Py_DECREF(message);
    return -1;
}

int ex_internal(Execution *ex, const char *message) {
    keep(ex, PyObject_CallFunction(InternalError, "s", message));
    return -1;
}

/* -- the meter ------------------------------------------------------------------------ */

static int out_of_fee(Execution *ex, const char *reason, int64_t needed, int64_t left) {
    keep(ex, PyObject_CallFunction(OutOfFee, "sLL", reason, (long long)needed, (long long)left));
    return -1;
}

int ex_consume(Execution *ex, int64_t amount, int category, const char *reason) {
    int64_t left = ex->limit - ex->used;
    if (amount > left) { /* charge what is left: used == limit, the breakdown still sums */
        ex->breakdown[category] += left;
        ex->used = ex->limit;
        return out_of_fee(ex, reason ? reason : CATEGORY_NAMES[category], amount, left);
    }
    ex->breakdown[category] += amount;
    ex->used += amount;
    return 0;
}

static int64_t paid_pages(const Prices *p, int64_t pages) {
    return pages > p->memory_free_pages ? pages - p->memory_free_pages : 0;
}

int ex_charge_growth(Execution *ex, uint64_t size) {
    int64_t pages = (int64_t)(size / PAGE);
    if (pages > ex->pages_charged) {
        const Prices *p = &ex->host->prices;
        int64_t grown = paid_pages(p, pages) - paid_pages(p, ex->pages_charged);
        ex->pages_charged = pages;
        return ex_consume(ex, grown * p->memory_page, CAT_MEMORY, "memory.grow");
    }
    return 0;
}

/* -- linear memory, bounds-checked as unsigned offsets -------------------------------- */

static int check(Execution *ex, uint64_t ptr, uint64_t end, const char *what) {
    /* Past the cached size: ask again (memory never shrinks or moves), charging growth. */
    ex->mem_size = wt.memory_data_size(ex->ctx, ex->memory);
    if (ex_charge_growth(ex, ex->mem_size) < 0)
        return -1;
    if (end > ex->mem_size)
        return ex_trap(ex, "memory_out_of_bounds", "wes.%s: bytes %llu..%llu are outside memory",
                       what, (unsigned long long)ptr, (unsigned long long)end);
    return 0;
}

PyObject *ex_read(Execution *ex, uint64_t ptr, uint64_t len, const char *what) {
    if (ptr + len > ex->mem_size && check(ex, ptr, ptr + len, what) < 0)
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize((const char *)ex->mem_base + ptr, (Py_ssize_t)len);
    if (out == NULL)
        ex_keep_python_error(ex);
    return out;
}

int ex_write(Execution *ex, uint64_t ptr, const char *data, uint64_t len, const char *what) {
    if (ptr + len > ex->mem_size && check(ex, ptr, ptr + len, what) < 0)
        return -1;
    memcpy(ex->mem_base + ptr, data, len);
    return 0;
}

/* -- the Python face: what engine/runtime.py calls ------------------------------------ */

static int category_index(PyObject *name) {
    for (int i = 0; i < NCAT; i++)
        if (PyUnicode_CompareWithASCIIString(name, CATEGORY_NAMES[i]) == 0)
            return i;
    PyErr_Format(PyExc_ValueError, "unknown fee category %R", name);
    return -1;
}

/* Raise the pending exception (set by a failed charge) as a Python exception. */
/* The fuel the fee left buys, and one more: wasmtime traps once the fuel used reaches what
 * was granted, and sees a run past it only at a loop header or a call, so with the one
 * more every run past what the fee buys is seen (a trap, or all the fuel gone at the next
 * look) and ends out_of_fee, and a run that the fee pays for never traps.
 * engine/execution_state.py's fuel_cap is the same. */
uint64_t ex_fuel_cap(const Execution *ex) {
    return (uint64_t)((ex->limit - ex->used) / ex->host->prices.instruction) + 1;
}

PyObject *ex_raise_pending(Execution *ex) {
    PyObject *exc = ex->pending;
    ex->pending = NULL;
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return NULL;
}

static PyObject *Execution_consume(Execution *ex, PyObject *const *args, Py_ssize_t n) {
    if (n < 2 || n > 3)
        return PyErr_Format(PyExc_TypeError, "consume(amount, category[, reason])");
    long long amount = PyLong_AsLongLong(args[0]);
    if (amount == -1 && PyErr_Occurred())
        return NULL;
    int category = category_index(args[1]);
    if (category < 0)
        return NULL;
    const char *reason = NULL;
    if (n == 3 && args[2] != Py_None && (reason = PyUnicode_AsUTF8(args[2])) == NULL)
        return NULL;
    if (ex_consume(ex, amount, category, reason) < 0)
        return ex_raise_pending(ex);
    Py_RETURN_NONE;
}

static PyObject *Execution_exhaust(Execution *ex, PyObject *name) {
    int category = category_index(name);
    if (category < 0)
        return NULL;
    ex->breakdown[category] += ex->limit - ex->used;
    ex->used = ex->limit;
    Py_RETURN_NONE;
}

static PyObject *Execution_attach(Execution *ex, PyObject *const *args, Py_ssize_t n) {
    /* attach(warm, pages, max_pages): warm has ctx_addr, memory_addr, memory_base,
     * memory_size. */
    if (n != 3)
        return PyErr_Format(PyExc_TypeError, "attach(warm, pages, max_pages)");
    static const char *names[] = {"ctx_addr", "memory_addr", "memory_base", "memory_size"};
    unsigned long long v[4];
    for (int i = 0; i < 4; i++) {
        PyObject *attr = PyObject_GetAttrString(args[0], names[i]);
        if (attr == NULL)
            return NULL;
        v[i] = PyLong_AsUnsignedLongLong(attr);
        Py_DECREF(attr);
        if (PyErr_Occurred())
            return NULL;
    }
    long long pages = PyLong_AsLongLong(args[1]), max_pages = PyLong_AsLongLong(args[2]);
    if (PyErr_Occurred())
        return NULL;
    Py_INCREF(args[0]);
    Py_XSETREF(ex->warm, args[0]);
    ex->ctx = (void *)(uintptr_t)v[0];
    ex->memory = (const void *)(uintptr_t)v[1];
    ex->mem_base = (uint8_t *)(uintptr_t)v[2];
    ex->mem_size = v[3];
    ex->pages_charged = pages;
    ex->max_pages = max_pages;
    Py_RETURN_NONE;
}

static PyObject *Execution_settle(Execution *ex, PyObject *unused) {
    /* Charge the instructions and pages used since the last look (return or trap). */
    uint64_t left;
    void *err = wt.get_fuel(ex->ctx, &left);
    if (err != NULL) {
        wt.error_delete(err);
        ex_internal(ex, "wasmtime refused get_fuel");
        return ex_raise_pending(ex);
    }
    uint64_t spent = ex->fuel_granted - left;
    ex->fuel_granted = left;
    if (spent && ex_consume(ex, (int64_t)spent * ex->host->prices.instruction, CAT_INSTRUCTIONS,
                            NULL) < 0)
        return ex_raise_pending(ex);
    if (ex_charge_growth(ex, wt.memory_data_size(ex->ctx, ex->memory)) < 0)
        return ex_raise_pending(ex);
    Py_RETURN_NONE;
}

static PyObject *Execution_get_breakdown(Execution *ex, void *unused) {
    PyObject *out = PyDict_New();
    for (int i = 0; out != NULL && i < NCAT; i++) {
        PyObject *value = PyLong_FromLongLong(ex->breakdown[i]);
        if (value == NULL || PyDict_SetItemString(out, CATEGORY_NAMES[i], value) < 0)
            Py_CLEAR(out);
        Py_XDECREF(value);
    }
    return out;
}

static PyObject *Execution_get_left(Execution *ex, void *unused) {
    return PyLong_FromLongLong(ex->limit - ex->used);
}

static int Execution_traverse(Execution *ex, visitproc visit, void *arg) {
    Py_VISIT(ex->host);
    Py_VISIT(ex->warm);
    Py_VISIT(ex->state);
    Py_VISIT(ex->events);
    Py_VISIT(ex->logs);
    Py_VISIT(ex->read_set);
    Py_VISIT(ex->writes);
    Py_VISIT(ex->pending);
    Py_VISIT(ex->last_result);
    return 0;
}

static int Execution_clear(Execution *ex) {
    Py_CLEAR(ex->host);
    Py_CLEAR(ex->warm);
    Py_CLEAR(ex->input);
    Py_CLEAR(ex->caller);
    Py_CLEAR(ex->address);
    Py_CLEAR(ex->contract);
    Py_CLEAR(ex->state);
    Py_CLEAR(ex->return_data);
    Py_CLEAR(ex->events);
    Py_CLEAR(ex->logs);
    Py_CLEAR(ex->read_set);
    Py_CLEAR(ex->writes);
    Py_CLEAR(ex->pending);
    Py_CLEAR(ex->last_result);
    return 0;
}

static void Execution_dealloc(Execution *ex) {
    PyObject_GC_UnTrack(ex);
    Execution_clear(ex);
    Py_TYPE(ex)->tp_free((PyObject *)ex);
}

static PyMethodDef Execution_methods[] = {
    {"consume", (PyCFunction)(void (*)(void))Execution_consume, METH_FASTCALL,
     "consume(amount, category, reason=None): charge, or raise OutOfFee"},
    {"exhaust", (PyCFunction)Execution_exhaust, METH_O,
     "exhaust(category): the budget ran out inside wasm; charge the rest"},
    {"attach", (PyCFunction)(void (*)(void))Execution_attach, METH_FASTCALL,
     "attach(warm, pages, max_pages): bind to a warm instance whose initial pages are "
     "charged"},
    {"settle", (PyCFunction)Execution_settle, METH_NOARGS,
     "charge the fuel and memory pages used since the last look"},
    {"read_declared", (PyCFunction)ex_read_declared, METH_O,
     "read_declared(keys): read the job's declared keys, each charged as a read"},
    {NULL},
};

static PyMemberDef Execution_members[] = {
    {"limit", T_LONGLONG, offsetof(Execution, limit), READONLY, NULL},
    {"used", T_LONGLONG, offsetof(Execution, used), READONLY, NULL},
    {"pages_charged", T_LONGLONG, offsetof(Execution, pages_charged), READONLY, NULL},
    {"return_data", T_OBJECT, offsetof(Execution, return_data), READONLY, NULL},
    {"events", T_OBJECT, offsetof(Execution, events), READONLY, NULL},
    {"logs", T_OBJECT, offsetof(Execution, logs), READONLY, NULL},
    {"read_set", T_OBJECT, offsetof(Execution, read_set), READONLY, NULL},
    {"writes", T_OBJECT, offsetof(Execution, writes), READONLY, NULL},
    {"pending", T_OBJECT, offsetof(Execution, pending), 0, NULL},
    {NULL},
};

static PyGetSetDef Execution_getset[] = {
    {"breakdown", (getter)Execution_get_breakdown, NULL, "fee used by category", NULL},
    {"left", (getter)Execution_get_left, NULL, "fee units left", NULL},
    {NULL},
};

PyTypeObject ExecutionType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "engine._native.ExecutionState",
    .tp_doc = "One execution's fee meter, memory binding and outputs (Host.execution makes one).",
    .tp_basicsize = sizeof(Execution),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)Execution_dealloc,
    .tp_traverse = (traverseproc)Execution_traverse,
    .tp_clear = (inquiry)Execution_clear,
    .tp_methods = Execution_methods,
    .tp_members = Execution_members,
    .tp_getset = Execution_getset,
};
