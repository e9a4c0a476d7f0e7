/* The trampolines wasmtime calls for every host function, the ABI table (native.h) they are
 * generated from, and its registration: FUNCTIONS, CAPABILITIES and CATEGORIES. A
 * trampoline takes the GIL back, charges the instructions run since the last look plus the
 * call's base price, checks the capability, runs the function (abi.c), writes its result
 * and lets the GIL go. A failure becomes the execution's pending exception and a trap. */

#include "native.h"

/* The instructions run since the last look, then the call's base price (fused). */
static int enter(Execution *ex, const char *name) {
    uint64_t left;
    void *err = wt.get_fuel(ex->ctx, &left);
    if (err != NULL) {
        wt.error_delete(err);
        return ex_internal(ex, "wasmtime refused get_fuel");
    }
    int64_t charge = (int64_t)(ex->fuel_granted - left) * ex->host->prices.instruction;
    int64_t base = ex->host->prices.host_call;
    ex->fuel_granted = left;
    if (charge + base <= ex->limit - ex->used) {
        ex->used += charge + base;
        ex->breakdown[CAT_INSTRUCTIONS] += charge;
        ex->breakdown[CAT_HOST_CALLS] += base;
        return 0;
    }
    if (ex_consume(ex, charge, CAT_INSTRUCTIONS, NULL) < 0)
        return -1;
    return ex_consume(ex, base, CAT_HOST_CALLS, name);
}

/* A host charge does not lower the fuel granted before it: once the fuel exceeds what the
 * fee left would buy by more than an eighth (and TRIM_SLACK), lower it to that, or wasm
 * runs on what the charge took (ending out_of_fee all the same, after up to twice the work
 * its fee pays for). engine/execution_state.py's trim_fuel is the same rule. */
#define TRIM_SLACK 4096
static int trim_fuel(Execution *ex) {
    uint64_t cap = ex_fuel_cap(ex);
    if (ex->fuel_granted <= cap + cap / 8 + TRIM_SLACK)
        return 0;
    void *err = wt.set_fuel(ex->ctx, cap);
    if (err != NULL) {
        wt.error_delete(err);
        return ex_internal(ex, "wasmtime refused set_fuel");
    }
    ex->fuel_granted = cap;
    return 0;
}

static const char *capability_name(uint32_t bit);

static void *trampoline(Host *host, Args a, Impl impl, const char *name, uint32_t capability,
                        int result, const char *trapped) {
    if (host == NULL || host->thread == NULL) /* no call of ours is running */
        return wt.trap_new(trapped, strlen(trapped));
    PyEval_RestoreThread(host->thread);
    Execution *ex = host->current;
    uint64_t value = 0;
    int rc = enter(ex, name);
    if (rc == 0 && (ex->denied & capability))
        rc = ex_trap(ex, "capability_denied", "%s: capability denied (%s)", name,
                     capability_name(capability));
    if (rc == 0)
        rc = impl(ex, a, &value);
    if (rc == 0)
        rc = trim_fuel(ex);
    if (rc == 0 && result != NO_RESULT) {
        a[0] = (uint32_t)value;
        if (result == I64_RESULT)
            a[1] = (uint32_t)(value >> 32);
    }
    host->thread = PyEval_SaveThread();
    return rc == 0 ? NULL : wt.trap_new(trapped, strlen(trapped));
}

#define CALLBACK(name, impl, sig, cap, result)                                      \
    static void *cb_##name(void *env, void *caller_, Args a, size_t n) {           \
        return trampoline((Host *)env, a, impl, "wes." #name, cap, result,         \
                          "wes." #name " trapped");                                 \
    }
ABI_FUNCTIONS(CALLBACK)

static const char *capability_name(uint32_t bit) {
    if (bit == 0)
        return ""; /* the engine's hooks: never denied */
    for (int i = 0; i < NCAP; i++)
        if (bit == (1u << i))
            return CAPABILITY_NAMES[i];
    return "?";
}

/* FUNCTIONS: name -> (trampoline address, signature, capability), for
 * wasmtime_linker_define_func_unchecked and the load-time check; CAPABILITIES: the names
 * of the denied-mask bits, in bit order. */
int register_host_functions(PyObject *module) {
#define ENTRY(name, impl, sig, cap, result) {#name, (void *)cb_##name, sig, cap},
    struct { const char *name; void *fn; const char *signature; uint32_t cap; } table[] = {
        ABI_FUNCTIONS(ENTRY)
    };
#undef ENTRY
    PyObject *functions = PyDict_New();
    if (functions == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        PyObject *row = Py_BuildValue("(Nss)", PyLong_FromVoidPtr(table[i].fn),
                                      table[i].signature, capability_name(table[i].cap));
        if (row == NULL || PyDict_SetItemString(functions, table[i].name, row) < 0) {
            Py_XDECREF(row);
            Py_DECREF(functions);
            return -1;
        }
        Py_DECREF(row);
    }
    if (PyModule_AddObject(module, "FUNCTIONS", functions) < 0) {
        Py_DECREF(functions);
        return -1;
    }
    PyObject *caps = PyTuple_New(NCAP), *cats = PyTuple_New(NCAT);
    for (int i = 0; caps != NULL && i < NCAP; i++)
        PyTuple_SET_ITEM(caps, i, PyUnicode_FromString(CAPABILITY_NAMES[i]));
    for (int i = 0; cats != NULL && i < NCAT; i++)
        PyTuple_SET_ITEM(cats, i, PyUnicode_FromString(CATEGORY_NAMES[i]));
    if (caps == NULL || cats == NULL || PyModule_AddObject(module, "CAPABILITIES", caps) < 0) {
        Py_XDECREF(caps);
        Py_XDECREF(cats);
        return -1;
    }
    if (PyModule_AddObject(module, "CATEGORIES", cats) < 0) {
        Py_DECREF(cats);
        return -1;
    }
    return 0;
}
