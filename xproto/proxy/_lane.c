/* Optional C accelerator of the proxy's fast lane (xproto/proxy/lane.py).
 *
 * Two loops over a read, for the built-in fixed-header protocols only (Dubbo, Bolt v1):
 * the same frames, the same results as the pure-Python loops in lane.py, which remain
 * the reference (and the path for plugin codecs and for XPROTO_PURE_PYTHON=1). A frame
 * the scanner would not call plain ends the loop; lane.py then hands it to the decoder.
 *
 *   requests(kind, src, out, pos, nxt, room, pending, lb, lim1, lim2)
 *       -> (pos, nxt, sent, waiting, out)
 *   responses(kind, src, out, pos, pending, hb, lb, others, table, lim1, lim2)
 *       -> (pos, k, lb, next_lb, out)
 *
 * kind 1 = Dubbo (lim1 = dubbo_max_body), kind 2 = Bolt v1 (lim1 = bolt_max_frame,
 * lim2 = bolt_max_header_block), kind 3 = framed binary Thrift (lim1 = thrift_max_frame
 * capped at 0x3FFFFFFF, lim2 = thrift_max_name; the seqid follows the method name). ``out`` is None or the bytearray copy of ``src`` the
 * ids are patched into (created here on the first lane frame).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define KIND_DUBBO 1
#define KIND_BOLT 2
#define KIND_THRIFT 3

static inline uint16_t be16(const unsigned char *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t be64(const unsigned char *p) { return ((uint64_t)be32(p) << 32) | be32(p + 4); }
static inline void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}
static inline void put64(unsigned char *p, uint64_t v) { put32(p, (uint32_t)(v >> 32)); put32(p + 4, (uint32_t)v); }

/* A plain request at b[pos..n): 1 two-way, 0 one-way, -1 not plain (or incomplete).
 * *end, *rid (as a Python int) set on success. Mirrors lane.py's scanners exactly. */
/* Framed binary Thrift message of one of two types at b[pos..n): 0 and *end, *sid (the
 * seqid's position), *type set, or -1. */
static int
scan_thrift(const unsigned char *b, Py_ssize_t pos, Py_ssize_t n, long long lim1, long long lim2,
            Py_ssize_t *end, Py_ssize_t *sid, int *type)
{
    const unsigned char *p = b + pos;
    if (n - pos < 16) return -1;
    uint32_t size = be32(p);
    if (be16(p + 4) != 0x8001 || size == 0 || (long long)size > lim1) return -1;
    Py_ssize_t e = pos + 4 + (Py_ssize_t)size;
    if (e > n) return -1;
    if (p[6] != 0) return -1;                      /* version word 0x8001 00 tt */
    int32_t nlen = (int32_t)be32(p + 8);
    if (nlen < 0 || (long long)nlen > lim2) return -1;
    Py_ssize_t s = pos + 12 + (Py_ssize_t)nlen;
    if (s + 4 > e) return -1;
    *end = e;
    *sid = s;
    *type = p[7];
    return 0;
}

static int
scan_request(int kind, const unsigned char *b, Py_ssize_t pos, Py_ssize_t n,
             long long lim1, long long lim2, Py_ssize_t *end, PyObject **rid, Py_ssize_t *idpos)
{
    const unsigned char *p = b + pos;
    if (kind == KIND_THRIFT) {
        Py_ssize_t sid;
        int t;
        if (scan_thrift(b, pos, n, lim1, lim2, end, &sid, &t) < 0 || (t != 1 && t != 4)) return -1;
        *rid = PyLong_FromLong((long)(int32_t)be32(b + sid));
        if (*rid == NULL) return -2;
        *idpos = sid;
        return t == 1 ? 1 : 0;
    }
    if (kind == KIND_DUBBO) {
        *idpos = pos + 4;
        if (n - pos < 16) return -1;
        if (be16(p) != 0xDABB || (p[2] & 0xA0) != 0x80) return -1;
        uint32_t blen = be32(p + 12);
        if ((long long)blen > lim1) return -1;
        Py_ssize_t e = pos + 16 + (Py_ssize_t)blen;
        if (e > n) return -1;
        *rid = PyLong_FromLongLong((long long)(int64_t)be64(p + 4));
        if (*rid == NULL) return -2;
        *end = e;
        return (p[2] & 0x40) ? 1 : 0;
    }
    /* Bolt v1 request: proto type cmd(2) ver2 id(4) codec timeout(4) cl(2) hl(2) ctl(4) */
    *idpos = pos + 5;
    if (n - pos < 22 || p[0] != 1) return -1;
    if (be16(p + 2) != 1) return -1;
    uint32_t hl = be16(p + 16);
    if ((long long)hl > lim2) return -1;
    long long total = 22 + (long long)be16(p + 14) + hl + (long long)be32(p + 18);
    if (pos + total > n || total > lim1) return -1;
    int t = p[1];
    if (t != 1 && t != 2) return -1;
    *rid = PyLong_FromUnsignedLong(be32(p + 5));
    if (*rid == NULL) return -2;
    *end = pos + (Py_ssize_t)total;
    return t == 1 ? 1 : 0;
}

/* A plain response: 0 and *end/*rid/*status set, or -1. */
static int
scan_response(int kind, const unsigned char *b, Py_ssize_t pos, Py_ssize_t n,
              long long lim1, long long lim2, Py_ssize_t *end, long long *rid, int *status,
              Py_ssize_t *idpos)
{
    const unsigned char *p = b + pos;
    if (kind == KIND_THRIFT) {       /* replies only: an exception's status needs its body */
        Py_ssize_t sid;
        int t;
        if (scan_thrift(b, pos, n, lim1, lim2, end, &sid, &t) < 0 || t != 2) return -1;
        *rid = (long long)(int32_t)be32(b + sid);
        *status = -1;               /* a reply: status_to_http 200 */
        *idpos = sid;
        return 0;
    }
    if (kind == KIND_DUBBO) {
        *idpos = pos + 4;
        if (n - pos < 16) return -1;
        if (be16(p) != 0xDABB || (p[2] & 0xA0) != 0) return -1;
        uint32_t blen = be32(p + 12);
        if ((long long)blen > lim1) return -1;
        Py_ssize_t e = pos + 16 + (Py_ssize_t)blen;
        if (e > n) return -1;
        *rid = (long long)(int64_t)be64(p + 4);
        *status = p[3];
        *end = e;
        return 0;
    }
    /* Bolt v1 response: proto type cmd(2) ver2 id(4) codec status(2) cl(2) hl(2) ctl(4) */
    *idpos = pos + 5;
    if (n - pos < 20 || p[0] != 1 || p[1] != 0) return -1;
    if (be16(p + 2) != 2) return -1;
    uint32_t hl = be16(p + 14);
    if ((long long)hl > lim2) return -1;
    long long total = 20 + (long long)be16(p + 12) + hl + (long long)be32(p + 16);
    if (pos + total > n || total > lim1) return -1;
    *rid = (long long)be32(p + 5);
    *status = be16(p + 10);
    *end = pos + (Py_ssize_t)total;
    return 0;
}

/* Write ``id`` at out[idpos]: 8 bytes for Dubbo, 4 (two's complement) for Bolt and Thrift. */
static int
patch_id(int kind, PyObject *out, Py_ssize_t idpos, PyObject *id)
{
    unsigned char *o = (unsigned char *)PyByteArray_AS_STRING(out) + idpos;
    if (kind == KIND_DUBBO) {
        unsigned long long v = PyLong_AsUnsignedLongLongMask(id);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
        put64(o, (uint64_t)v);
    } else {
        unsigned long v = PyLong_AsUnsignedLongMask(id);
        if (v == (unsigned long)-1 && PyErr_Occurred()) return -1;
        put32(o, (uint32_t)(v & 0xFFFFFFFFUL));
    }
    return 0;
}

static PyObject *
lane_requests(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "requests() takes 10 arguments");
        return NULL;
    }
    int kind = (int)PyLong_AsLong(args[0]);
    PyObject *out = args[2];
    Py_ssize_t pos = PyLong_AsSsize_t(args[3]);
    unsigned long long nxt = PyLong_AsUnsignedLongLong(args[4]);
    Py_ssize_t room = PyLong_AsSsize_t(args[5]);
    PyObject *pending = args[6];
    PyObject *lb = args[7];
    long long lim1 = PyLong_AsLongLong(args[8]);
    long long lim2 = PyLong_AsLongLong(args[9]);
    if (PyErr_Occurred()) return NULL;
    if (!PyDict_CheckExact(pending) || (out != Py_None && !PyByteArray_CheckExact(out))) {
        PyErr_SetString(PyExc_TypeError, "requests(): bad argument types");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *b = (const unsigned char *)view.buf;
    Py_ssize_t n = view.len;
    Py_ssize_t sent = 0, waiting = 0;
    if (out != Py_None && PyByteArray_GET_SIZE(out) < n) {   /* ids are patched up to n */
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "requests(): out is shorter than src");
        return NULL;
    }
    Py_INCREF(out);
    while (pos < n) {
        Py_ssize_t end, idpos = 0;
        PyObject *rid = NULL;
        int r = scan_request(kind, b, pos, n, lim1, lim2, &end, &rid, &idpos);
        if (r == -2) goto error;
        if (r < 0) break;
        if (r == 1 && waiting >= room) { Py_DECREF(rid); break; }
        if (out == Py_None) {
            Py_DECREF(out);
            out = PyByteArray_FromStringAndSize((const char *)b, n);
            if (out == NULL) { Py_DECREF(rid); goto error_noout; }
        }
        PyObject *uid = PyLong_FromUnsignedLongLong(nxt);
        if (uid == NULL) { Py_DECREF(rid); goto error; }
        if (patch_id(kind, out, idpos, uid) < 0) { Py_DECREF(uid); Py_DECREF(rid); goto error; }
        if (r == 1) {
            PyObject *p = PyLong_FromSsize_t(pos);
            PyObject *ent = p ? PyTuple_New(3) : NULL;
            if (ent == NULL) { Py_XDECREF(p); Py_DECREF(uid); Py_DECREF(rid); goto error; }
            Py_INCREF(lb);
            PyTuple_SET_ITEM(ent, 0, lb);
            PyTuple_SET_ITEM(ent, 1, rid);   /* steals */
            PyTuple_SET_ITEM(ent, 2, p);     /* steals */
            rid = NULL;
            int rc = PyDict_SetItem(pending, uid, ent);
            Py_DECREF(ent);
            if (rc < 0) { Py_DECREF(uid); goto error; }
            waiting++;
        }
        Py_XDECREF(rid);
        Py_DECREF(uid);
        nxt++;
        sent++;
        pos = end;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(nKnnN)", pos, nxt, sent, waiting, out);
error:
    Py_DECREF(out);
error_noout:
    PyBuffer_Release(&view);
    return NULL;
}

static PyObject *
lane_responses(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "responses() takes 11 arguments");
        return NULL;
    }
    int kind = (int)PyLong_AsLong(args[0]);
    PyObject *out = args[2];
    Py_ssize_t pos = PyLong_AsSsize_t(args[3]);
    PyObject *pending = args[4];
    long long hb = PyLong_AsLongLong(args[5]);
    PyObject *lb = args[6];
    PyObject *others = args[7];
    PyObject *table = args[8];
    long long lim1 = PyLong_AsLongLong(args[9]);
    long long lim2 = PyLong_AsLongLong(args[10]);
    if (PyErr_Occurred()) return NULL;
    if (!PyDict_CheckExact(pending) || !PyList_CheckExact(others) || !PyTuple_CheckExact(table)
            || (out != Py_None && !PyByteArray_CheckExact(out))) {
        PyErr_SetString(PyExc_TypeError, "responses(): bad argument types");
        return NULL;
    }
    int ok_status = kind == KIND_DUBBO ? 20 : kind == KIND_THRIFT ? -1 : 0;
    Py_ssize_t ntable = PyTuple_GET_SIZE(table);
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *b = (const unsigned char *)view.buf;
    Py_ssize_t n = view.len;
    Py_ssize_t k = 0;
    if (out != Py_None && PyByteArray_GET_SIZE(out) < n) {   /* ids are patched up to n */
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "responses(): out is shorter than src");
        return NULL;
    }
    PyObject *next_lb = Py_None;
    Py_INCREF(out);
    Py_INCREF(lb);
    while (pos < n) {
        Py_ssize_t end, idpos = 0;
        long long rid;
        int status;
        if (scan_response(kind, b, pos, n, lim1, lim2, &end, &rid, &status, &idpos) < 0) break;
        if (rid == hb) break;
        PyObject *key = PyLong_FromLongLong(rid);
        if (key == NULL) goto error;
        /* one lookup: pop, and put back what this loop does not take (rare) */
        PyObject *ent = _PyDict_Pop(pending, key, Py_None);   /* new reference */
        if (ent == NULL) { Py_DECREF(key); goto error; }
        if (ent == Py_None) { Py_DECREF(ent); Py_DECREF(key); break; }
        PyObject *elb = NULL;
        int take = PyTuple_CheckExact(ent) && PyTuple_GET_SIZE(ent) == 3;
        if (take) {
            elb = PyTuple_GET_ITEM(ent, 0);
            if (lb == Py_None) {
                Py_DECREF(lb);
                lb = elb;
                Py_INCREF(lb);
            } else if (elb != lb) {
                next_lb = elb;   /* stays alive: the entry goes back into pending */
                take = 0;
            }
        }
        if (!take) {
            int rc = PyDict_SetItem(pending, key, ent);
            Py_DECREF(ent);
            Py_DECREF(key);
            if (rc < 0) goto error;
            break;
        }
        if (out == Py_None) {
            Py_DECREF(out);
            out = PyByteArray_FromStringAndSize((const char *)b, n);
            if (out == NULL) { Py_DECREF(ent); Py_DECREF(key); goto error_noout; }
        }
        int prc = patch_id(kind, out, idpos, PyTuple_GET_ITEM(ent, 1));
        Py_DECREF(ent);
        if (prc < 0) { Py_DECREF(key); goto error; }
        if (status != ok_status) {
            PyObject *h;
            if (status < ntable) {
                h = PyTuple_GET_ITEM(table, status);
                Py_INCREF(h);
            } else {
                h = PyLong_FromLong(500);
                if (h == NULL) { Py_DECREF(key); goto error; }
            }
            int rc = PyList_Append(others, h);
            Py_DECREF(h);
            if (rc < 0) { Py_DECREF(key); goto error; }
        }
        Py_DECREF(key);
        k++;
        pos = end;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(nnNON)", pos, k, lb, next_lb, out);
error:
    Py_DECREF(out);
error_noout:
    Py_DECREF(lb);
    PyBuffer_Release(&view);
    return NULL;
}

static PyMethodDef methods[] = {
    {"requests", (PyCFunction)(void (*)(void))lane_requests, METH_FASTCALL,
     "Forward the plain requests of a read (see xproto/proxy/lane.py)."},
    {"responses", (PyCFunction)(void (*)(void))lane_responses, METH_FASTCALL,
     "Answer one batch's plain responses of a read (see xproto/proxy/lane.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "xproto.proxy._lane",
    "Optional C loops of the proxy's fast lane.", -1, methods,
};

PyMODINIT_FUNC
PyInit__lane(void)
{
    return PyModule_Create(&moduledef);
}
