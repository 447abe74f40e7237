/*
 * xproto load generator: a compiled, single-threaded epoll client that sends real protocol
 * frames with pipelining, validates every response id and records a latency histogram.
 * A Python load generator costs as much CPU as the proxy and would be the bottleneck.
 *
 *   loadgen -a HOST:PORT -P dubbo|bolt|http|thrift|kafka -f TEMPLATE(raw bytes)
 *           -c CONNS -d DEPTH [-n REQUESTS] [-t SECONDS] [-w WARMUP_SECONDS]
 *
 * Multiplexed protocols (dubbo, bolt, kafka, thrift framed): each request gets a fresh id
 * patched into the template; the response id must be one that is in flight on that
 * connection. HTTP: responses are matched in order (pipelining).
 * Output: one JSON line with requests, errors, seconds, rps, p50/p90/p99/max in µs.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { P_DUBBO, P_BOLT, P_HTTP, P_THRIFT, P_KAFKA };

#define HIST_US 200000 /* 1 µs buckets up to 200 ms */
static uint64_t hist[HIST_US + 1];

typedef struct {
    int fd;
    uint8_t *rbuf; size_t rlen, rcap;
    uint8_t *wbuf; size_t wlen, wcap, woff;
    uint32_t next_id;
    int inflight;
    /* ring of in-flight (id, send time) */
    uint32_t *ids; uint64_t *t0; int head, tail, cap;
} conn_t;

static int proto;
static uint8_t *tmpl; static size_t tmpl_len;
static size_t id_off; static int id_len; /* request id position in the template */
static int depth;
static uint64_t sent, done, errors, limit_n;
static int measuring;

static uint64_t now_ns(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}
static uint32_t rd32(const uint8_t *p) { return ((uint32_t)p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]; }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static void wr32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }

static void die(const char *m) { perror(m); exit(1); }

static void ensure(uint8_t **b, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 4096; while (c < need) c *= 2;
    *b = realloc(*b, c); if (!*b) die("realloc"); *cap = c;
}

/* where the request id sits in a request template */
static void locate_id(void) {
    switch (proto) {
    case P_DUBBO: id_off = 4 + 4; id_len = 4; break;          /* low 32 bits of the int64 */
    case P_BOLT: id_off = (tmpl[0] == 2) ? 7 : 5; id_len = 4; break;
    case P_KAFKA: id_off = 8; id_len = 4; break;
    case P_THRIFT: { /* framed strict binary: len, 0x8001 ver, type, name len, name, seqid */
        uint32_t nl = rd32(tmpl + 8); id_off = 12 + nl; id_len = 4; break; }
    default: id_off = 0; id_len = 0;
    }
}

/* returns total length of the first response in buf, 0 if incomplete, -1 if broken;
 * *rid receives the response id */
static long resp_frame(const uint8_t *b, size_t n, uint32_t *rid) {
    switch (proto) {
    case P_DUBBO:
        if (n < 16) return 0;
        if (b[0] != 0xda || b[1] != 0xbb) return -1;
        *rid = rd32(b + 8);
        return (long)(16 + rd32(b + 12)) <= (long)n ? (long)(16 + rd32(b + 12)) : 0;
    case P_BOLT: {
        size_t h = b[0] == 2 ? 22 : 20; size_t off = b[0] == 2 ? 2 : 0;
        if (n < h) return 0;
        if (b[0] != 1 && b[0] != 2) return -1;
        *rid = rd32(b + 5 + off);
        size_t tot = h + rd16(b + 12 + off) + rd16(b + 14 + off) + rd32(b + 16 + off);
        if (b[0] == 2 && b[1] == 2) tot += 4;
        return tot <= n ? (long)tot : 0;
    }
    case P_KAFKA:
        if (n < 8) return 0;
        *rid = rd32(b + 4);
        return 4 + rd32(b) <= n ? (long)(4 + rd32(b)) : 0;
    case P_THRIFT: {
        if (n < 12) return 0;
        uint32_t fl = rd32(b); uint32_t nl = rd32(b + 8);
        if (n < 4 + (size_t)fl) return 0;
        if (12 + nl + 4 > 4 + fl) return -1;
        *rid = rd32(b + 12 + nl);
        return 4 + fl;
    }
    case P_HTTP: {
        void *e = memmem(b, n, "\r\n\r\n", 4);
        if (!e) return 0;
        size_t hl = (uint8_t *)e - b + 4;
        const char *cl = memmem(b, hl, "ontent-Length:", 14);
        if (!cl) cl = memmem(b, hl, "ontent-length:", 14);
        size_t bl = cl ? strtoul(cl + 14, NULL, 10) : 0;
        *rid = 0;
        return hl + bl <= n ? (long)(hl + bl) : 0;
    }
    }
    return -1;
}

static void queue_request(conn_t *c) {
    ensure(&c->wbuf, &c->wcap, c->wlen + tmpl_len);
    uint8_t *p = c->wbuf + c->wlen;
    memcpy(p, tmpl, tmpl_len);
    uint32_t id = c->next_id++;
    if (proto == P_KAFKA || proto == P_THRIFT) id &= 0x7fffffff;
    if (id_len) wr32(p + id_off, id);
    c->wlen += tmpl_len;
    c->ids[c->tail] = id; c->t0[c->tail] = now_ns();
    c->tail = (c->tail + 1) % c->cap; c->inflight++;
    sent++;
}

static int flush(conn_t *c) {
    while (c->woff < c->wlen) {
        ssize_t w = write(c->fd, c->wbuf + c->woff, c->wlen - c->woff);
        if (w < 0) { if (errno == EAGAIN) return 0; return -1; }
        c->woff += w;
    }
    c->wlen = c->woff = 0;
    return 0;
}

int main(int argc, char **argv) {
    const char *addr = "127.0.0.1:20880", *file = NULL, *pname = "dubbo";
    int conns = 1; double secs = 5, warm = 0.5; depth = 1; limit_n = 0;
    int o;
    while ((o = getopt(argc, argv, "a:P:f:c:d:n:t:w:")) != -1) {
        switch (o) {
        case 'a': addr = optarg; break; case 'P': pname = optarg; break;
        case 'f': file = optarg; break; case 'c': conns = atoi(optarg); break;
        case 'd': depth = atoi(optarg); break; case 'n': limit_n = strtoull(optarg, 0, 10); break;
        case 't': secs = atof(optarg); break; case 'w': warm = atof(optarg); break;
        default: fprintf(stderr, "usage: see source\n"); return 2;
        }
    }
    if (!strcmp(pname, "dubbo")) proto = P_DUBBO; else if (!strcmp(pname, "bolt")) proto = P_BOLT;
    else if (!strcmp(pname, "http")) proto = P_HTTP; else if (!strcmp(pname, "thrift")) proto = P_THRIFT;
    else if (!strcmp(pname, "kafka")) proto = P_KAFKA; else { fprintf(stderr, "bad proto\n"); return 2; }
    if (!file) { fprintf(stderr, "-f TEMPLATE required\n"); return 2; }
    FILE *f = fopen(file, "rb"); if (!f) die("template");
    tmpl = malloc(1 << 20); tmpl_len = fread(tmpl, 1, 1 << 20, f); fclose(f);
    locate_id();

    char host[256]; const char *colon = strrchr(addr, ':');
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(colon + 1))};
    inet_pton(AF_INET, host, &sa.sin_addr);

    int ep = epoll_create1(0);
    conn_t *cs = calloc(conns, sizeof *cs);
    for (int i = 0; i < conns; i++) {
        conn_t *c = &cs[i];
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect");
        int one = 1; setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(c->fd, F_SETFL, O_NONBLOCK);
        c->cap = depth + 1; c->ids = calloc(c->cap, 4); c->t0 = calloc(c->cap, 8);
        c->next_id = 1 + i * 7919u;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        for (int k = 0; k < depth; k++) queue_request(c);
        if (flush(c) < 0) die("write");
    }
    uint64_t start = now_ns(), mstart = 0, mdone0 = 0, merr0 = 0;
    uint64_t warm_ns = (uint64_t)(warm * 1e9), end_ns = (uint64_t)((warm + secs) * 1e9);
    measuring = warm_ns == 0; if (measuring) mstart = start;
    struct epoll_event evs[256];
    int stopping = 0;
    for (;;) {
        uint64_t t = now_ns();
        if (!measuring && t - start >= warm_ns) { measuring = 1; mstart = t; mdone0 = done; merr0 = errors; }
        if (t - start >= end_ns || (limit_n && done >= limit_n)) stopping = 1;
        if (stopping) { int any = 0; for (int i = 0; i < conns; i++) any |= cs[i].inflight; if (!any) break; if (t - start >= end_ns + 5000000000ull) { errors += 1; break; } }
        int n = epoll_wait(ep, evs, 256, 100);
        for (int e = 0; e < n; e++) {
            conn_t *c = &cs[evs[e].data.u32];
            if (evs[e].events & EPOLLOUT) {
                if (flush(c) < 0) die("write");
                if (c->wlen == 0) { struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[e].data.u32}; epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev); }
            }
            if (!(evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            ensure(&c->rbuf, &c->rcap, c->rlen + 65536);
            ssize_t r = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
            if (r == 0) { fprintf(stderr, "connection closed by peer\n"); errors++; goto out; }
            if (r < 0) { if (errno == EAGAIN) continue; die("read"); }
            c->rlen += r;
            size_t pos = 0; uint64_t tn = now_ns();
            for (;;) {
                uint32_t rid = 0;
                long fl = resp_frame(c->rbuf + pos, c->rlen - pos, &rid);
                if (fl == 0) break;
                if (fl < 0) { fprintf(stderr, "broken response stream\n"); errors++; goto out; }
                if (c->inflight == 0) { fprintf(stderr, "response with nothing in flight\n"); errors++; goto out; }
                /* find the id among in-flight ones (normally the head) */
                int idx = c->head, found = -1;
                if (proto == P_HTTP) found = idx;
                else for (int k = 0; k < c->inflight; k++, idx = (idx + 1) % c->cap)
                    if (c->ids[idx] == rid) { found = idx; break; }
                if (found < 0) { errors++; fprintf(stderr, "unexpected response id %u\n", rid); pos += fl; continue; }
                uint64_t t0 = c->t0[found];
                if (found != c->head) { /* out-of-order: swap into head slot */
                    c->ids[found] = c->ids[c->head]; c->t0[found] = c->t0[c->head];
                }
                c->head = (c->head + 1) % c->cap; c->inflight--;
                if (measuring) { uint64_t us = (tn - t0) / 1000; hist[us > HIST_US ? HIST_US : us]++; }
                done++; pos += fl;
                if (!stopping && (!limit_n || sent < limit_n)) queue_request(c);
            }
            memmove(c->rbuf, c->rbuf + pos, c->rlen - pos); c->rlen -= pos;
            if (c->wlen) {
                if (flush(c) < 0) die("write");
                if (c->wlen) { struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = evs[e].data.u32}; epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev); }
            }
        }
    }
out:;
    uint64_t mend = now_ns();
    if (!mstart) mstart = start;
    uint64_t total = 0; for (int i = 0; i <= HIST_US; i++) total += hist[i];
    double el = (mend - mstart) / 1e9;
    uint64_t q[4] = {0}; double ps[4] = {0.5, 0.9, 0.99, 1.0}; uint64_t acc = 0; int qi = 0;
    for (int i = 0; i <= HIST_US && qi < 4; i++) { acc += hist[i]; while (qi < 4 && total && acc >= (uint64_t)(ps[qi] * total + 0.5 > total ? total : ps[qi] * total + 0.5)) q[qi++] = i; }
    printf("{\"requests\": %llu, \"errors\": %llu, \"seconds\": %.3f, \"rps\": %.1f, \"p50_us\": %llu, \"p90_us\": %llu, \"p99_us\": %llu, \"max_us\": %llu}\n",
           (unsigned long long)total, (unsigned long long)(errors - merr0), el, total / el,
           (unsigned long long)q[0], (unsigned long long)q[1], (unsigned long long)q[2], (unsigned long long)q[3]);
    (void)mdone0;
    return errors ? 1 : 0;
}
