/* Optional C accelerator for xproto.hessian2 (the pure-Python path is the reference).
 *
 * skip_loop() runs Reader.skip()'s token loop for the simple cases only: sized atoms,
 * ASCII compact/short strings, map/list/object containers (numbered in refs exactly as
 * the Python loop numbers them), end markers and compact ASCII class definitions. At
 * anything else -- a truncated value, a non-ASCII string, a limit that would be
 * exceeded, an undefined class, a bad end marker, a code whose kind is "other" -- it
 * returns the state as it is *before* that token, and the Python loop handles the token
 * (and raises the ProtocolError / LimitExceeded with the right offset). It never raises
 * a protocol error itself and never reads outside data[0:limit]. The only exceptions it
 * can raise are MemoryError and TypeError/ValueError/OverflowError for bad arguments
 * (the Python glue never passes those).
 *
 *   skip_loop(data, pos, limit, pending, stack, depth, max_depth, refs, max_objects, tag,
 *             defs, max_classdefs, kinds, fixed) -> (pos, pending, depth)
 *
 * pending: values left at this level; -1: list until the end marker; -2/-3: map until the
 * end marker, expecting a key/a value. stack: list of int, the pending of the enclosing
 * levels (pushed/popped in place). kinds/fixed: the dialect's 256-byte tables.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { K_NONE, K_RUN, K_SHORT, K_MAP, K_UNTIL_END, K_LIST_DIRECT, K_OBJECT_DIRECT, K_CLASSDEF, K_END };

#define LOCAL_STACK 128

static int
is_ascii(const unsigned char *p, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & UINT64_C(0x8080808080808080))
            return 0;
    }
    for (; i < n; i++)
        if (p[i] & 0x80)
            return 0;
    return 1;
}

/* A compact ASCII string of 1..31 characters at p (a class or field name, as the
   Python loop's classdef regex takes it): its end, or -1. */
static Py_ssize_t
compact_ascii_name(const unsigned char *d, Py_ssize_t p, Py_ssize_t limit, const unsigned char *fixed)
{
    unsigned int c;
    if (p >= limit)
        return -1;
    c = d[p];
    if (c == 0 || c >= 0x20 || fixed[c] == 0)
        return -1;
    if (p + 1 + (Py_ssize_t)c > limit)
        return -1;
    if (!is_ascii(d + p + 1, c))
        return -1;
    return p + 1 + c;
}

/* A "light" atom at p (a sized value, or a compact ASCII string of 1..31 characters;
   not the 0x30 form), as the classdef regex takes an instance's fields: its end, or -1. */
static Py_ssize_t
light_atom(const unsigned char *d, Py_ssize_t p, Py_ssize_t limit, const unsigned char *fixed)
{
    unsigned int c;
    Py_ssize_t size;
    if (p >= limit)
        return -1;
    c = d[p];
    size = fixed[c];
    if (size == 0)
        return -1;
    if (c != 0 && c < 0x20)
        return compact_ascii_name(d, p, limit, fixed);
    if (p + size > limit)
        return -1;
    return p + size;
}

/* A limit: clamped to [0, PY_SSIZE_T_MAX >> 3] (the same answers for every count the
   loop can reach: the data is shorter than that). */
static Py_ssize_t
arg_limit(PyObject *o, int *err)
{
    long long v;
    int overflow = 0;
    if (!PyLong_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "skip_loop: int expected");
        *err = 1;
        return 0;
    }
    v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        *err = 1;
        return 0;
    }
    if (overflow < 0 || v < 0)
        return 0;
    if (overflow > 0 || v > (long long)(PY_SSIZE_T_MAX >> 3))
        return PY_SSIZE_T_MAX >> 3;
    return (Py_ssize_t)v;
}

static Py_ssize_t
arg_ssize(PyObject *o, int *err)
{
    Py_ssize_t v;
    if (!PyLong_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "skip_loop: int expected");
        *err = 1;
        return 0;
    }
    v = PyLong_AsSsize_t(o);
    if (v == -1 && PyErr_Occurred())
        *err = 1;
    return v;
}

/* Move the local stack onto the Python list (in order). 0 on success. */
static int
flush(PyObject *stack, Py_ssize_t *local, Py_ssize_t *nlocal)
{
    Py_ssize_t i;
    for (i = 0; i < *nlocal; i++) {
        PyObject *v = PyLong_FromSsize_t(local[i]);
        if (v == NULL)
            return -1;
        if (PyList_Append(stack, v) < 0) {
            Py_DECREF(v);
            return -1;
        }
        Py_DECREF(v);
    }
    *nlocal = 0;
    return 0;
}

static PyObject *
skip_loop(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    const unsigned char *d;
    const unsigned char *kinds, *fixed;
    Py_ssize_t pos, limit, pending, depth, max_depth, max_objects, tag, max_classdefs;
    PyObject *stack, *refs, *defs;
    Py_ssize_t local[LOCAL_STACK];
    Py_ssize_t nlocal = 0;
    int err = 0;
    int failed = 0;
    PyObject *result = NULL;

    (void)module;
    if (nargs != 14) {
        PyErr_SetString(PyExc_TypeError, "skip_loop takes 14 arguments");
        return NULL;
    }
    pos = arg_ssize(args[1], &err);
    limit = arg_ssize(args[2], &err);
    pending = arg_ssize(args[3], &err);
    depth = arg_ssize(args[5], &err);
    max_depth = arg_limit(args[6], &err);
    max_objects = arg_limit(args[8], &err);
    tag = arg_ssize(args[9], &err);
    max_classdefs = arg_limit(args[11], &err);
    if (err)
        return NULL;
    stack = args[4];
    refs = args[7];
    defs = args[10];
    if (!PyList_CheckExact(stack) || !PyList_CheckExact(refs) || !PyList_CheckExact(defs)) {
        PyErr_SetString(PyExc_TypeError, "skip_loop: stack, refs and defs must be lists");
        return NULL;
    }
    if (!PyBytes_CheckExact(args[12]) || PyBytes_GET_SIZE(args[12]) != 256
        || !PyBytes_CheckExact(args[13]) || PyBytes_GET_SIZE(args[13]) != 256) {
        PyErr_SetString(PyExc_TypeError, "skip_loop: kinds and fixed must be 256 bytes");
        return NULL;
    }
    if (pos < 0 || limit < 0 || tag < 0 || tag > 3) {
        PyErr_SetString(PyExc_ValueError, "skip_loop: bad arguments");
        return NULL;
    }
    /* keep references: the tables are module-level constants in practice, but the
       buffer is exported (a bytearray cannot be resized while we hold it) */
    Py_INCREF(args[12]);
    Py_INCREF(args[13]);
    kinds = (const unsigned char *)PyBytes_AS_STRING(args[12]);
    fixed = (const unsigned char *)PyBytes_AS_STRING(args[13]);
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(args[12]);
        Py_DECREF(args[13]);
        return NULL;
    }
    d = (const unsigned char *)view.buf;
    if (limit > view.len)
        limit = view.len;
    /* offsets are stored as pos << 2 | tag: keep them far from overflow */
    if (limit > (PY_SSIZE_T_MAX >> 3))
        goto done;

    for (;;) {
        unsigned int code, kind;
        Py_ssize_t end, n;
        PyObject *marker;

        if (pending == 0) {
            if (nlocal > 0) {
                pending = local[--nlocal];
            }
            else {
                Py_ssize_t sn = PyList_GET_SIZE(stack);
                PyObject *top;
                Py_ssize_t v;
                if (sn == 0)
                    goto done;
                top = PyList_GET_ITEM(stack, sn - 1);
                if (!PyLong_CheckExact(top))
                    goto done;
                v = PyLong_AsSsize_t(top);
                if (v == -1 && PyErr_Occurred()) {
                    PyErr_Clear();
                    goto done; /* (huge) leave it to Python */
                }
                if (PyList_SetSlice(stack, sn - 1, sn, NULL) < 0) {
                    failed = 1;
                    goto done;
                }
                pending = v;
            }
            depth -= 1;
            continue;
        }
        if (pos >= limit)
            goto done; /* Python: "unexpected end of data" */
        code = d[pos];
        kind = kinds[code];
        if (kind == K_RUN) {
            Py_ssize_t size = fixed[code];
            if (size) {
                end = pos + size;
                if (end > limit)
                    goto done;
                if (code < 0x20 && code != 0
                    && (size != 1 + (Py_ssize_t)code || !is_ascii(d + pos + 1, code)))
                    goto done;
                pos = end;
                goto value_done;
            }
            kind = K_SHORT; /* the 0x30 form */
        }
        if (kind == K_SHORT) {
            if (pos + 1 >= limit)
                goto done;
            n = ((Py_ssize_t)((int)code - 0x30) << 8) | d[pos + 1];
            end = pos + 2 + n;
            if (n < 0 || end > limit)
                goto done;
            if (!is_ascii(d + pos + 2, n))
                goto done;
            pos = end;
            goto value_done;
        }
        if (kind >= K_MAP && kind <= K_OBJECT_DIRECT) {
            if (PyList_GET_SIZE(refs) >= max_objects || depth >= max_depth)
                goto done;
            if (kind == K_MAP) {
                n = -2;
            }
            else if (kind == K_UNTIL_END) {
                n = -1;
            }
            else if (kind == K_LIST_DIRECT) {
                n = (Py_ssize_t)code - 0x78;
                if (n < 0)
                    goto done;
            }
            else {
                Py_ssize_t i = (Py_ssize_t)code - 0x60;
                PyObject *entry, *cnt;
                if (i < 0 || i >= PyList_GET_SIZE(defs))
                    goto done;
                entry = PyList_GET_ITEM(defs, i);
                if (!PyList_CheckExact(entry) || PyList_GET_SIZE(entry) < 2)
                    goto done;
                cnt = PyList_GET_ITEM(entry, 1);
                if (!PyLong_CheckExact(cnt))
                    goto done;
                n = PyLong_AsSsize_t(cnt);
                if (n == -1 && PyErr_Occurred()) {
                    PyErr_Clear();
                    goto done;
                }
                if (n < 0)
                    goto done;
            }
            marker = PyLong_FromSsize_t(pos << 2 | tag);
            if (marker == NULL) {
                failed = 1;
                goto done;
            }
            if (PyList_Append(refs, marker) < 0) {
                Py_DECREF(marker);
                failed = 1;
                goto done;
            }
            Py_DECREF(marker);
            if (pending > 0)
                pending -= 1;
            else if (pending < -1)
                pending = -5 - pending;
            if (nlocal == LOCAL_STACK && flush(stack, local, &nlocal) < 0) {
                /* (refs already has the marker and pending was counted: the
                   container must still be entered for the state to be whole) */
                failed = 1;
                goto done;
            }
            local[nlocal++] = pending;
            depth += 1;
            pos += 1;
            pending = n;
            continue;
        }
        if (kind == K_CLASSDEF) {
            /* Exactly the Python loop's classdef fast path (its regex): a compact ASCII
               name, field count 0x90..0x9f, compact ASCII field names; and when a direct
               object of this very class follows whose fields are all light atoms, that
               instance too, whatever its code means in the dialect otherwise. */
            Py_ssize_t p, q = -1, k;
            PyObject *entry, *cnt, *off;
            if (PyList_GET_SIZE(defs) >= max_classdefs)
                goto done;
            p = compact_ascii_name(d, pos + 1, limit, fixed);
            if (p < 0 || p >= limit)
                goto done;
            if (d[p] < 0x90 || d[p] > 0x9f)
                goto done;
            n = d[p] - 0x90;
            p += 1;
            for (k = 0; k < n; k++) {
                p = compact_ascii_name(d, p, limit, fixed);
                if (p < 0)
                    goto done;
            }
            if (p < limit && d[p] >= 0x60 && d[p] <= 0x6f
                && (Py_ssize_t)d[p] - 0x60 == PyList_GET_SIZE(defs)) {
                q = p + 1;
                for (k = 0; k < n && q >= 0; k++)
                    q = light_atom(d, q, limit, fixed);
                if (q >= 0 && (PyList_GET_SIZE(refs) >= max_objects || depth >= max_depth))
                    goto done; /* Python raises the limit (nothing recorded yet) */
            }
            cnt = PyLong_FromSsize_t(n);
            off = PyLong_FromSsize_t(pos + 1);
            entry = PyList_New(3);
            if (cnt == NULL || off == NULL || entry == NULL) {
                Py_XDECREF(cnt);
                Py_XDECREF(off);
                Py_XDECREF(entry);
                failed = 1;
                goto done;
            }
            Py_INCREF(Py_None);
            PyList_SET_ITEM(entry, 0, Py_None);
            PyList_SET_ITEM(entry, 1, cnt);
            PyList_SET_ITEM(entry, 2, off);
            if (PyList_Append(defs, entry) < 0) {
                Py_DECREF(entry);
                failed = 1;
                goto done;
            }
            Py_DECREF(entry);
            if (q < 0) {
                pos = p; /* not a value: the instance follows, for the loop */
                continue;
            }
            marker = PyLong_FromSsize_t(p << 2 | tag);
            if (marker == NULL) {
                failed = 1;
                goto done;
            }
            if (PyList_Append(refs, marker) < 0) {
                Py_DECREF(marker);
                failed = 1;
                goto done;
            }
            Py_DECREF(marker);
            pos = q; /* the instance, taken whole */
            goto value_done;
        }
        if (kind == K_END) {
            if (pending != -1 && pending != -2)
                goto done;
            pos += 1;
            pending = 0;
            continue;
        }
        goto done; /* K_NONE and anything unknown: the dialect's handler, in Python */

    value_done:
        if (pending > 0)
            pending -= 1;
        else if (pending < -1)
            pending = -5 - pending;
    }

done:
    PyBuffer_Release(&view);
    Py_DECREF(args[12]);
    Py_DECREF(args[13]);
    if (nlocal > 0 && flush(stack, local, &nlocal) < 0)
        failed = 1;
    if (failed)
        return NULL;
    result = Py_BuildValue("(nnn)", pos, pending, depth);
    return result;
}

static PyMethodDef methods[] = {
    {"skip_loop", (PyCFunction)(void (*)(void))skip_loop, METH_FASTCALL,
     "skip_loop(data, pos, limit, pending, stack, depth, max_depth, refs, max_objects, tag, "
     "defs, max_classdefs, kinds, fixed) -> (pos, pending, depth)\n\n"
     "Reader.skip()'s loop for the simple cases; returns at anything else."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "xproto.hessian2._speedups",
    "Optional C accelerator for xproto.hessian2 (see decoder.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&moduledef);
}
