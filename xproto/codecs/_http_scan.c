/* Optional C accelerator of the HTTP/1.1 codec's strict fast path (xproto/codecs/http.py).
 *
 *   scan_head(buf, pos, limit, is_response, max_headers, max_body)
 *       -> None | (head_len, body_len, keep_alive, a, b)
 *
 * The same function as http.py's ``_scan_head_py`` (the regular expressions _FAST_REQ /
 * _FAST_RESP, _FRAMING and _DIGITS plus the framing checks), which remains the reference and
 * the path for XPROTO_PURE_PYTHON=1: the head is the first CRLFCRLF-terminated block at
 * ``buf[pos:]`` that ends within ``min(limit, len(buf) - pos)`` bytes, and it is accepted
 * only when all of this holds:
 *
 *   - start line: ``METHOD /path HTTP/1.1`` (METHOD one of GET POST PUT DELETE OPTIONS PATCH
 *     HEAD, path of [A-Za-z0-9-._~%!$&'()*+,;=:@/?]) for a request; for a response
 *     ``HTTP/1.1 DDD reason`` (DDD 200-599 but not 204 or 304; reason empty or words of
 *     [A-Za-z0-9.,_-] separated by single spaces);
 *   - header lines ``name:value CRLF`` (name of [A-Za-z0-9-]+, value of bytes 0x20-0x7e),
 *     at most ``max_headers`` of them, then an empty line;
 *   - Content-Length (any case) at most once, its value (after the spaces following ':')
 *     1-18 ASCII digits, at most ``max_body``; a response must have one;
 *   - no Transfer-Encoding, Proxy-Connection or Upgrade field; no Connection field with an
 *     ``upgrade`` token (tokens: comma-separated, spaces trimmed, any case); a ``close``
 *     token makes keep_alive False.
 *
 * Result: head_len (bytes up to and including the empty line), body_len (-1: no
 * Content-Length), keep_alive (bool), then (method str, path str) for a request or
 * (status int, reason str) for a response. None means "not the fast path" (the caller uses
 * llhttp), including for a head not yet whole in the buffer, pos outside [0, len(buf)], a
 * negative limit and buffers that are not bytes-like. Reads only buf[pos:pos + min(limit, len - pos)]; allocates
 * only the result.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define C_PATH 1    /* request-target (origin-form) bytes */
#define C_NAME 2    /* header name bytes */
#define C_VALUE 4   /* header value bytes: 0x20-0x7e */
#define C_WORD 8    /* reason phrase word bytes */

static unsigned char cls[256];

static void
init_classes(void)
{
    int c;
    const char *p;
    for (c = 0x20; c <= 0x7e; c++) cls[c] |= C_VALUE;
    for (c = 0; c < 256; c++) {
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            cls[c] |= C_PATH | C_NAME | C_WORD;
        }
    }
    for (p = "-._~%!$&'()*+,;=:@/?"; *p; p++) cls[(unsigned char)*p] |= C_PATH;
    cls['-'] |= C_NAME;
    for (p = ".,_-"; *p; p++) cls[(unsigned char)*p] |= C_WORD;
}

static PyObject *method_str[7];
static const char *const method_name[7] = {
    "GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "HEAD",
};

/* n bytes at p equal the lower-case ASCII word w (p holds header-name or value bytes). */
static inline int
eq_lower(const unsigned char *p, const char *w, Py_ssize_t n)
{
    Py_ssize_t k;
    for (k = 0; k < n; k++) {
        unsigned char c = p[k];
        if (c >= 'A' && c <= 'Z') c |= 0x20;
        if (c != (unsigned char)w[k]) return 0;
    }
    return 1;
}

/* ASCII text as a str (the bytes are known to be < 0x80). */
static PyObject *
ascii_str(const unsigned char *p, Py_ssize_t n)
{
    PyObject *s = PyUnicode_New(n, 127);
    if (s != NULL && n) memcpy(PyUnicode_1BYTE_DATA(s), p, (size_t)n);
    return s;
}

enum { F_OTHER, F_CL, F_CONN, F_REJECT };

/* What the framing depends on in a header named p[0:n]. */
static inline int
field_kind(const unsigned char *p, Py_ssize_t n)
{
    switch (n) {
    case 7:  return eq_lower(p, "upgrade", 7) ? F_REJECT : F_OTHER;
    case 10: return eq_lower(p, "connection", 10) ? F_CONN : F_OTHER;
    case 14: return eq_lower(p, "content-length", 14) ? F_CL : F_OTHER;
    case 16: return eq_lower(p, "proxy-connection", 16) ? F_REJECT : F_OTHER;
    case 17: return eq_lower(p, "transfer-encoding", 17) ? F_REJECT : F_OTHER;
    default: return F_OTHER;
    }
}

/* Connection value v[0:n]: -1 an "upgrade" token, 0 a "close" token (and no upgrade), 1 else. */
static int
connection_tokens(const unsigned char *v, Py_ssize_t n)
{
    int r = 1;
    Py_ssize_t i = 0;
    while (i <= n) {
        Py_ssize_t a = i, z;
        while (i < n && v[i] != ',') i++;
        z = i;
        while (a < z && v[a] == ' ') a++;
        while (z > a && v[z - 1] == ' ') z--;
        if (z - a == 7 && eq_lower(v + a, "upgrade", 7)) return -1;
        if (z - a == 5 && eq_lower(v + a, "close", 5)) r = 0;
        i++;   /* past the comma (or past the end) */
    }
    return r;
}

/* The scan over b[0:wn) (b = buf + pos). 1 accepted (outputs set), 0 not the fast path. */
static int
scan(const unsigned char *b, Py_ssize_t wn, int is_response, Py_ssize_t max_headers,
     long long max_body, Py_ssize_t *head_len, long long *body_len, int *keep_alive,
     int *a_int, Py_ssize_t *b_off, Py_ssize_t *b_len)
{
    Py_ssize_t i, nh = 0;
    long long cl = -1;
    int ka = 1;

    if (is_response) {
        /* HTTP/1.1 DDD reason CRLF */
        if (wn < 13 || memcmp(b, "HTTP/1.1 ", 9) != 0) return 0;
        if (b[9] < '2' || b[9] > '5' || b[10] < '0' || b[10] > '9' || b[11] < '0' ||
            b[11] > '9' || b[12] != ' ') {
            return 0;
        }
        *a_int = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
        if (*a_int == 204 || *a_int == 304) return 0;
        i = 13;
        *b_off = i;
        while (i < wn && (cls[b[i]] & C_WORD)) {
            i++;
            if (i < wn && b[i] == ' ') {     /* a single space, then another word */
                i++;
                if (i >= wn || !(cls[b[i]] & C_WORD)) return 0;
            }
        }
        *b_len = i - *b_off;
    } else {
        /* METHOD SP /path SP HTTP/1.1 CRLF */
        int m = -1;
        Py_ssize_t k;
        for (k = 0; k < 8 && k < wn && b[k] != ' '; k++) {
        }
        if (k >= wn || b[k] != ' ') return 0;
        switch (k) {
        case 3:
            if (memcmp(b, "GET", 3) == 0) m = 0;
            else if (memcmp(b, "PUT", 3) == 0) m = 2;
            break;
        case 4:
            if (memcmp(b, "POST", 4) == 0) m = 1;
            else if (memcmp(b, "HEAD", 4) == 0) m = 6;
            break;
        case 5:
            if (memcmp(b, "PATCH", 5) == 0) m = 5;
            break;
        case 6:
            if (memcmp(b, "DELETE", 6) == 0) m = 3;
            break;
        case 7:
            if (memcmp(b, "OPTIONS", 7) == 0) m = 4;
            break;
        }
        if (m < 0) return 0;
        *a_int = m;
        i = k + 1;
        if (i >= wn || b[i] != '/') return 0;
        *b_off = i;
        while (i < wn && (cls[b[i]] & C_PATH)) i++;
        *b_len = i - *b_off;
        if (wn - i < 9 || memcmp(b + i, " HTTP/1.1", 9) != 0) return 0;
        i += 9;
    }
    if (wn - i < 2 || b[i] != '\r' || b[i + 1] != '\n') return 0;
    i += 2;

    /* header lines, then the empty line */
    for (;;) {
        Py_ssize_t n0 = i, nlen, v0, vlen;
        if (i < wn && b[i] == '\r') {
            if (i + 1 < wn && b[i + 1] == '\n') break;
            return 0;
        }
        while (i < wn && (cls[b[i]] & C_NAME)) i++;
        nlen = i - n0;
        if (nlen == 0 || i >= wn || b[i] != ':') return 0;
        i++;
        v0 = i;
        while (i < wn && (cls[b[i]] & C_VALUE)) i++;
        if (wn - i < 2 || b[i] != '\r' || b[i + 1] != '\n') return 0;
        vlen = i - v0;
        i += 2;
        if (++nh > max_headers) return 0;   /* (negative max_headers: below) */
        switch (field_kind(b + n0, nlen)) {
        case F_OTHER:
            break;
        case F_CL: {
            const unsigned char *v = b + v0;
            Py_ssize_t k = 0;
            long long x = 0;
            if (cl >= 0) return 0;              /* a second Content-Length */
            while (k < vlen && v[k] == ' ') k++;
            if (vlen - k < 1 || vlen - k > 18) return 0;
            for (; k < vlen; k++) {
                if (v[k] < '0' || v[k] > '9') return 0;
                x = x * 10 + (v[k] - '0');
            }
            cl = x;
            break;
        }
        case F_CONN: {
            int r = connection_tokens(b + v0, vlen);
            if (r < 0) return 0;
            if (r == 0) ka = 0;
            break;
        }
        default:
            return 0;
        }
    }
    if (nh > max_headers || (cl >= 0 && cl > max_body)) return 0;
    if (is_response && cl < 0) return 0;
    *head_len = i + 2;
    *body_len = cl;
    *keep_alive = ka;
    return 1;
}

static PyObject *
scan_head(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    const unsigned char *data;
    Py_ssize_t n, pos, limit, max_headers, head_len, b_off, b_len, wn;
    long long max_body, body_len;
    int is_response, keep_alive, a_int, ok;
    Py_buffer view;
    PyObject *buf, *a, *b, *res;

    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "scan_head(buf, pos, limit, is_response, max_headers, max_body)");
        return NULL;
    }
    buf = args[0];
    pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) return NULL;
    limit = PyLong_AsSsize_t(args[2]);
    if (limit == -1 && PyErr_Occurred()) return NULL;
    is_response = PyObject_IsTrue(args[3]);
    if (is_response < 0) return NULL;
    max_headers = PyLong_AsSsize_t(args[4]);
    if (max_headers == -1 && PyErr_Occurred()) return NULL;
    max_body = PyLong_AsLongLong(args[5]);
    if (max_body == -1 && PyErr_Occurred()) return NULL;

    view.obj = NULL;
    if (PyBytes_CheckExact(buf)) {
        data = (const unsigned char *)PyBytes_AS_STRING(buf);
        n = PyBytes_GET_SIZE(buf);
    } else if (PyByteArray_CheckExact(buf)) {
        data = (const unsigned char *)PyByteArray_AS_STRING(buf);
        n = PyByteArray_GET_SIZE(buf);
    } else {
        if (PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE) < 0) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        data = (const unsigned char *)view.buf;
        n = view.len;
    }
    /* nothing below calls back into Python: the bytes cannot change during the scan */
    if (pos < 0 || pos > n || limit <= 0) {
        ok = 0;
    } else {
        wn = n - pos < limit ? n - pos : limit;
        ok = scan(data + pos, wn, is_response, max_headers, max_body, &head_len, &body_len,
                  &keep_alive, &a_int, &b_off, &b_len);
    }
    if (!ok) {
        if (view.obj != NULL) PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    b = ascii_str(data + pos + b_off, b_len);
    if (view.obj != NULL) PyBuffer_Release(&view);
    if (b == NULL) return NULL;
    if (is_response) {
        a = PyLong_FromLong(a_int);
        if (a == NULL) {
            Py_DECREF(b);
            return NULL;
        }
    } else {
        a = method_str[a_int];
        Py_INCREF(a);
    }
    res = PyTuple_New(5);
    if (res == NULL) {
        Py_DECREF(a);
        Py_DECREF(b);
        return NULL;
    }
    PyObject *hl = PyLong_FromSsize_t(head_len);
    PyObject *bl = PyLong_FromLongLong(body_len);
    if (hl == NULL || bl == NULL) {
        Py_XDECREF(hl);
        Py_XDECREF(bl);
        Py_DECREF(a);
        Py_DECREF(b);
        Py_DECREF(res);
        return NULL;
    }
    PyTuple_SET_ITEM(res, 0, hl);
    PyTuple_SET_ITEM(res, 1, bl);
    PyObject *kao = keep_alive ? Py_True : Py_False;
    Py_INCREF(kao);
    PyTuple_SET_ITEM(res, 2, kao);
    PyTuple_SET_ITEM(res, 3, a);
    PyTuple_SET_ITEM(res, 4, b);
    return res;
}

/* scan_message(is_response, limit, max_headers, max_body, buf, pos, n) -> None | (end, value)
 *
 * http.py's ``message_scanner`` closures in one call (bind the first four arguments with
 * functools.partial): a message on the fast path whose connection stays open (keep_alive),
 * whole in buf[:n]; requests other than HEAD give (end, True), responses (end,
 * status_to_http(status)). Same results as the closures over ``scan_head``. */
static PyObject *
scan_message(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    const unsigned char *data;
    Py_ssize_t n, lim_n, pos, limit, max_headers, head_len, b_off, b_len, wn, end;
    long long max_body, body_len;
    int is_response, keep_alive, a_int, ok;
    PyObject *buf, *e, *v, *res;

    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "scan_message(is_response, limit, max_headers, max_body, buf, pos, n)");
        return NULL;
    }
    is_response = PyObject_IsTrue(args[0]);
    if (is_response < 0) return NULL;
    limit = PyLong_AsSsize_t(args[1]);
    if (limit == -1 && PyErr_Occurred()) return NULL;
    max_headers = PyLong_AsSsize_t(args[2]);
    if (max_headers == -1 && PyErr_Occurred()) return NULL;
    max_body = PyLong_AsLongLong(args[3]);
    if (max_body == -1 && PyErr_Occurred()) return NULL;
    buf = args[4];
    pos = PyLong_AsSsize_t(args[5]);
    if (pos == -1 && PyErr_Occurred()) return NULL;
    lim_n = PyLong_AsSsize_t(args[6]);
    if (lim_n == -1 && PyErr_Occurred()) return NULL;
    /* the closures refuse memoryviews and scan_head takes bytes-likes: bytes and bytearray
       are what the proxy passes; anything else is "not plain" */
    if (PyBytes_CheckExact(buf)) {
        data = (const unsigned char *)PyBytes_AS_STRING(buf);
        n = PyBytes_GET_SIZE(buf);
    } else if (PyByteArray_CheckExact(buf)) {
        data = (const unsigned char *)PyByteArray_AS_STRING(buf);
        n = PyByteArray_GET_SIZE(buf);
    } else {
        Py_RETURN_NONE;
    }
    if (pos < 0 || pos > n || limit <= 0) Py_RETURN_NONE;
    wn = n - pos < limit ? n - pos : limit;
    ok = scan(data + pos, wn, is_response, max_headers, max_body, &head_len, &body_len,
              &keep_alive, &a_int, &b_off, &b_len);
    if (!ok || !keep_alive) Py_RETURN_NONE;
    if (is_response) {
        end = pos + head_len + (Py_ssize_t)body_len;
    } else {
        if (a_int == 6) Py_RETURN_NONE;          /* HEAD: its response has no body */
        end = pos + head_len + (body_len > 0 ? (Py_ssize_t)body_len : 0);
    }
    if (end > lim_n) Py_RETURN_NONE;
    if (is_response) {
        int st = a_int;
        if (st < 400) st = 200;
        else if (!(st == 400 || st == 404 || st == 500 || st == 502 || st == 503 || st == 504))
            st = st < 500 ? 400 : 500;
        v = PyLong_FromLong(st);
        if (v == NULL) return NULL;
    } else {
        v = Py_True;
        Py_INCREF(v);
    }
    e = PyLong_FromSsize_t(end);
    if (e == NULL) {
        Py_DECREF(v);
        return NULL;
    }
    res = PyTuple_New(2);
    if (res == NULL) {
        Py_DECREF(e);
        Py_DECREF(v);
        return NULL;
    }
    PyTuple_SET_ITEM(res, 0, e);
    PyTuple_SET_ITEM(res, 1, v);
    return res;
}

static PyMethodDef methods[] = {
    {"scan_message", (PyCFunction)(void (*)(void))scan_message, METH_FASTCALL,
     "scan_message(is_response, limit, max_headers, max_body, buf, pos, n) -> None | "
     "(end, value); see the function's comment."},
    {"scan_head", (PyCFunction)(void (*)(void))scan_head, METH_FASTCALL,
     "scan_head(buf, pos, limit, is_response, max_headers, max_body) -> None | "
     "(head_len, body_len, keep_alive, method_or_status, path_or_reason); see the module doc."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "xproto.codecs._http_scan",
    "Optional C scanner of the HTTP/1.1 codec's strict fast path.", -1, methods,
};

PyMODINIT_FUNC
PyInit__http_scan(void)
{
    int k;
    init_classes();
    for (k = 0; k < 7; k++) {
        if (method_str[k] == NULL) {
            method_str[k] = PyUnicode_InternFromString(method_name[k]);
            if (method_str[k] == NULL) return NULL;
        }
    }
    return PyModule_Create(&moduledef);
}
