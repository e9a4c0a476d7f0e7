/* Host (one per WasmEngine), the call into wasm, and the module: loading wasmtime's
 * entry points from the library wasmtime-py already loaded. */

#include "native.h"

#include <dlfcn.h>

WasmtimeApi wt;
PyObject *ContractTrap, *OutOfFee, *Reverted, *InternalError;
static bool loaded;

#define EXTERN_FUNC 0 /* WASMTIME_EXTERN_FUNC */

/* wasmtime_extern_t: a kind byte, then (at offset 8) a union; a func is 16 bytes. */
typedef struct {
    uint8_t kind;
    uint8_t pad[7];
    uint8_t of[24];
} Extern;

static int64_t item(PyObject *seq, Py_ssize_t i, int *failed) {
    long long v = PyLong_AsLongLong(PyTuple_GET_ITEM(seq, i));
    if (v == -1 && PyErr_Occurred())
        *failed = 1;
    return v;
}

static int Host_init(Host *self, PyObject *args, PyObject *kwargs) {
    /* Host(prices: tuple[int, ...21], limits: tuple[int, ...13], callbacks: tuple[fn, ...6]) */
    PyObject *prices, *limits, *callbacks;
    if (!loaded) {
        PyErr_SetString(PyExc_RuntimeError, "engine._native.load() has not bound wasmtime");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "O!O!O!", &PyTuple_Type, &prices, &PyTuple_Type, &limits,
                          &PyTuple_Type, &callbacks))
        return -1;
    if (PyTuple_GET_SIZE(prices) != sizeof(Prices) / sizeof(int64_t) ||
        PyTuple_GET_SIZE(limits) != sizeof(Limits) / sizeof(int64_t) ||
        PyTuple_GET_SIZE(callbacks) != NCALLBACKS) {
        PyErr_SetString(PyExc_ValueError, "Host: wrong number of prices, limits or functions");
        return -1;
    }
    int failed = 0;
    int64_t *p = (int64_t *)&self->prices, *l = (int64_t *)&self->limits;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(prices); i++)
        p[i] = item(prices, i, &failed);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(limits); i++)
        l[i] = item(limits, i, &failed);
    if (failed)
        return -1;
    if (self->prices.instruction <= 0) {
        PyErr_SetString(PyExc_ValueError, "Host: the instruction price must be positive");
        return -1;
    }
    for (int i = 0; i < NCALLBACKS; i++) {
        PyObject *fn = PyTuple_GET_ITEM(callbacks, i);
        Py_INCREF(fn);
        Py_XSETREF(self->callbacks[i], fn);
    }
    return 0;
}

static PyObject *bytes_of(PyObject *text) {
    if (!PyUnicode_Check(text))
        return PyErr_Format(PyExc_TypeError, "expected str, got %T", text);
    return PyUnicode_AsUTF8String(text);
}

static PyObject *u64_attr(PyObject *obj, const char *name, uint64_t *out) {
    PyObject *v = PyObject_GetAttrString(obj, name);
    if (v == NULL)
        return NULL;
    /* Python's `value & 0xFFFFFFFFFFFFFFFF`: two's complement for negative values. */
    *out = (uint64_t)PyLong_AsUnsignedLongLongMask(v);
    Py_DECREF(v);
    return PyErr_Occurred() ? NULL : Py_None;
}

static PyObject *Host_execution(Host *self, PyObject *const *args, Py_ssize_t n) {
    /* execution(job, state, denied_mask) -> Execution */
    if (n != 3)
        return PyErr_Format(PyExc_TypeError, "execution(job, state, denied)");
    PyObject *job = args[0];
    Execution *ex = PyObject_GC_New(Execution, &ExecutionType);
    if (ex == NULL)
        return NULL;
    memset((char *)ex + sizeof(PyObject), 0, sizeof(Execution) - sizeof(PyObject));
    Py_INCREF(self);
    ex->host = self;
    Py_INCREF(args[1]);
    ex->state = args[1];
    ex->denied = (uint32_t)PyLong_AsUnsignedLong(args[2]);
    PyObject *context = NULL, *caller = NULL, *fee = NULL;
    if (PyErr_Occurred() || (ex->input = PyObject_GetAttrString(job, "input")) == NULL ||
        (ex->contract = PyObject_GetAttrString(job, "contract")) == NULL ||
        (ex->address = bytes_of(ex->contract)) == NULL ||
        (context = PyObject_GetAttrString(job, "context")) == NULL ||
        (caller = PyObject_GetAttrString(context, "caller")) == NULL ||
        (ex->caller = bytes_of(caller)) == NULL ||
        u64_attr(context, "block_height", &ex->block_height) == NULL ||
        u64_attr(context, "block_time", &ex->block_time) == NULL ||
        (fee = PyObject_GetAttrString(job, "fee_limit")) == NULL ||
        ((ex->limit = PyLong_AsLongLong(fee)) == -1 && PyErr_Occurred()) ||
        (ex->return_data = PyBytes_FromStringAndSize(NULL, 0)) == NULL ||
        (ex->events = PyList_New(0)) == NULL || (ex->logs = PyList_New(0)) == NULL ||
        (ex->read_set = PyDict_New()) == NULL || (ex->writes = PyDict_New()) == NULL ||
        (ex->last_result = PyBytes_FromStringAndSize(NULL, 0)) == NULL) {
        Py_XDECREF(context);
        Py_XDECREF(caller);
        Py_XDECREF(fee);
        Py_DECREF(ex);
        return NULL;
    }
    Py_DECREF(context);
    Py_DECREF(caller);
    Py_DECREF(fee);
    if (!PyBytes_Check(ex->input)) {
        Py_DECREF(ex);
        return PyErr_Format(PyExc_TypeError, "job.input must be bytes");
    }
    PyObject_GC_Track(ex);
    return (PyObject *)ex;
}

static PyObject *Host_call(Host *self, PyObject *const *args, Py_ssize_t n) {
    /* call(ex, instance_addr, entry: bytes, deadline_ticks) -> None (returned), False (no
     * such entry point) or (trap_addr, error_addr), both owned by the caller now. */
    if (n != 4 || Py_TYPE(args[0]) != &ExecutionType || !PyBytes_Check(args[2]))
        return PyErr_Format(PyExc_TypeError, "call(execution, instance, entry, ticks)");
    Execution *ex = (Execution *)args[0];
    void *instance = PyLong_AsVoidPtr(args[1]);
    unsigned long long ticks = PyLong_AsUnsignedLongLong(args[3]);
    if (PyErr_Occurred())
        return NULL;
    Extern entry;
    if (!wt.export_get(ex->ctx, instance, PyBytes_AS_STRING(args[2]),
                       (size_t)PyBytes_GET_SIZE(args[2]), &entry) ||
        entry.kind != EXTERN_FUNC)
        Py_RETURN_FALSE;
    /* Give wasm the budget left, as fuel (once: host calls settle, never top up). */
    ex->fuel_granted = ex_fuel_cap(ex);
    void *err = wt.set_fuel(ex->ctx, ex->fuel_granted);
    if (err != NULL) {
        wt.error_delete(err);
        ex_internal(ex, "wasmtime refused set_fuel");
        return ex_raise_pending(ex);
    }
    wt.set_epoch_deadline(ex->ctx, ticks);
    uint8_t results[16] = {0};
    void *trap = NULL;
    /* A cross-contract call's frame runs inside its caller's host call: the caller is put
     * back when it returns. */
    Execution *caller = self->current;
    PyThreadState *caller_thread = self->thread;
    self->current = ex;
    self->thread = PyEval_SaveThread(); /* the epoch ticker needs the GIL meanwhile */
    err = wt.func_call_unchecked(ex->ctx, entry.of, results, 1, &trap);
    PyEval_RestoreThread(self->thread);
    self->thread = caller_thread;
    self->current = caller;
    if (trap == NULL && err == NULL)
        Py_RETURN_NONE;
    return Py_BuildValue("(NN)", PyLong_FromVoidPtr(trap), PyLong_FromVoidPtr(err));
}

static int Host_traverse(Host *self, visitproc visit, void *arg) {
    for (int i = 0; i < NCALLBACKS; i++)
        Py_VISIT(self->callbacks[i]);
    return 0;
}

static int Host_clear(Host *self) {
    for (int i = 0; i < NCALLBACKS; i++)
        Py_CLEAR(self->callbacks[i]);
    return 0;
}

static void Host_dealloc(Host *self) {
    PyObject_GC_UnTrack(self);
    Host_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Host_methods[] = {
    {"execution", (PyCFunction)(void (*)(void))Host_execution, METH_FASTCALL,
     "execution(job, state, denied_mask) -> Execution"},
    {"call", (PyCFunction)(void (*)(void))Host_call, METH_FASTCALL,
     "call(execution, instance_addr, entry, ticks): run an entry point"},
    {NULL},
};

PyTypeObject HostType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "engine._native.Host",
    .tp_doc = "Host(prices, limits, callbacks): the ABI for one engine",
    .tp_basicsize = sizeof(Host),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Host_init,
    .tp_dealloc = (destructor)Host_dealloc,
    .tp_traverse = (traverseproc)Host_traverse,
    .tp_clear = (inquiry)Host_clear,
    .tp_methods = Host_methods,
};

/* -- module ------------------------------------------------------------------------- */

static PyObject *load(PyObject *module, PyObject *const *args, Py_ssize_t n) {
    /* load(library_path, sizeof_extern, sizeof_func): bind wasmtime's entry points. */
    if (n != 3)
        return PyErr_Format(PyExc_TypeError, "load(path, sizeof_extern, sizeof_func)");
    if (PyLong_AsLong(args[1]) != sizeof(Extern) || PyLong_AsLong(args[2]) != 16)
        return PyErr_Format(PyExc_RuntimeError, "wasmtime's struct layout is not the one "
                                                "engine._native was written for");
    const char *path = PyUnicode_AsUTF8(args[0]);
    if (path == NULL)
        return NULL;
    void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (lib == NULL)
        lib = dlopen(path, RTLD_NOW);
    if (lib == NULL)
        return PyErr_Format(PyExc_OSError, "dlopen %s: %s", path, dlerror());
    struct { void **slot; const char *name; } symbols[] = {
        {(void **)&wt.get_fuel, "wasmtime_context_get_fuel"},
        {(void **)&wt.set_fuel, "wasmtime_context_set_fuel"},
        {(void **)&wt.set_epoch_deadline, "wasmtime_context_set_epoch_deadline"},
        {(void **)&wt.memory_data_size, "wasmtime_memory_data_size"},
        {(void **)&wt.trap_new, "wasmtime_trap_new"},
        {(void **)&wt.error_delete, "wasmtime_error_delete"},
        {(void **)&wt.export_get, "wasmtime_instance_export_get"},
        {(void **)&wt.func_call_unchecked, "wasmtime_func_call_unchecked"},
        {(void **)&wt.memory_grow, "wasmtime_memory_grow"},
    };
    for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); i++) {
        if ((*symbols[i].slot = dlsym(lib, symbols[i].name)) == NULL)
            return PyErr_Format(PyExc_OSError, "%s: no symbol %s", path, symbols[i].name);
    }
    loaded = true;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"load", (PyCFunction)(void (*)(void))load, METH_FASTCALL,
     "load(library_path, sizeof_extern, sizeof_func): bind wasmtime's C API"},
    {"pack_result", pack_result, METH_O,
     "pack_result(result): (its stored bytes, its fee record), or None (call sets)"},
    {NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "engine._native",
    "The ABI's host functions and fee meter in C (engine/host.py is the reference).", -1,
    module_methods,
};

static PyObject *error_class(PyObject *errors, const char *name) {
    return PyObject_GetAttrString(errors, name);
}

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&HostType) < 0 || PyType_Ready(&ExecutionType) < 0)
        return NULL;
    PyObject *errors = PyImport_ImportModule("engine.errors");
    if (errors == NULL)
        return NULL;
    ContractTrap = error_class(errors, "ContractTrap");
    OutOfFee = error_class(errors, "OutOfFee");
    Reverted = error_class(errors, "Reverted");
    InternalError = error_class(errors, "InternalError");
    Py_DECREF(errors);
    if (!ContractTrap || !OutOfFee || !Reverted || !InternalError)
        return NULL;
    PyObject *module = PyModule_Create(&native_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&HostType);
    Py_INCREF(&ExecutionType);
    if (PyModule_AddObject(module, "Host", (PyObject *)&HostType) < 0 ||
        PyModule_AddObject(module, "ExecutionState", (PyObject *)&ExecutionType) < 0 ||
        register_host_functions(module) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
