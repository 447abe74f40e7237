/*
 * xproto benchmark upstream: a compiled single-threaded epoll server that answers every
 * request frame with a fixed response template carrying the request's id.
 * It exists so that the benchmark measures the proxy, not a Python server.
 *
 *   upstream -p PORT -P dubbo|bolt|http|thrift|kafka -f RESPONSE_TEMPLATE
 * Prints "ready PORT" on stdout once listening (PORT 0 = pick a free one).
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
#include <unistd.h>

enum { P_DUBBO, P_BOLT, P_HTTP, P_THRIFT, P_KAFKA };
static int proto;
static uint8_t *resp; static size_t resp_len;

typedef struct { uint8_t *r; size_t rl, rc; uint8_t *w; size_t wl, wc, wo; } buf_t;

static uint32_t rd32(const uint8_t *p) { return ((uint32_t)p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]; }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static void ensure(uint8_t **b, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 4096; while (c < need) c *= 2;
    *b = realloc(*b, c); if (!*b) { perror("realloc"); exit(1); } *cap = c;
}

/* length of the first request in b (0 incomplete, -1 broken) */
static long req_len(const uint8_t *b, size_t n) {
    switch (proto) {
    case P_DUBBO: if (n < 16) return 0; if (b[0] != 0xda) return -1; return 16 + rd32(b + 12) <= n ? (long)(16 + rd32(b + 12)) : 0;
    case P_BOLT: { size_t off = b[0] == 2 ? 2 : 0; size_t h = 22 + off; if (n < h) return 0;
        if (rd16(b + 2 + off) == 0 && b[1] == 1 && 0) return -1;
        size_t t = h + rd16(b + 14 + off) + rd16(b + 16 + off) + rd32(b + 18 + off); if (b[0] == 2 && b[1] == 2) t += 4; return t <= n ? (long)t : 0; }
    case P_KAFKA: case P_THRIFT: if (n < 4) return 0; return 4 + rd32(b) <= n ? (long)(4 + rd32(b)) : 0;
    case P_HTTP: { void *e = memmem(b, n, "\r\n\r\n", 4); if (!e) return 0; size_t hl = (uint8_t *)e - b + 4;
        const char *cl = memmem(b, hl, "ontent-Length:", 14); if (!cl) cl = memmem(b, hl, "ontent-length:", 14);
        size_t bl = cl ? strtoul(cl + 14, NULL, 10) : 0; return hl + bl <= n ? (long)(hl + bl) : 0; }
    }
    return -1;
}

static void answer(buf_t *c, const uint8_t *req) {
    ensure(&c->w, &c->wc, c->wl + resp_len);
    uint8_t *p = c->w + c->wl; memcpy(p, resp, resp_len); c->wl += resp_len;
    switch (proto) {
    case P_DUBBO: memcpy(p + 4, req + 4, 8); break;
    case P_BOLT: { size_t ro = p[0] == 2 ? 2 : 0, qo = req[0] == 2 ? 2 : 0; memcpy(p + 5 + ro, req + 5 + qo, 4); break; }
    case P_KAFKA: memcpy(p + 4, req + 8, 4); break;
    case P_THRIFT: { uint32_t qn = rd32(req + 8), rn = rd32(p + 8); memcpy(p + 12 + rn, req + 12 + qn, 4); break; }
    default: break;
    }
}

int main(int argc, char **argv) {
    int port = 0, o; const char *pname = "dubbo", *file = NULL;
    while ((o = getopt(argc, argv, "p:P:f:")) != -1) {
        if (o == 'p') port = atoi(optarg); else if (o == 'P') pname = optarg; else if (o == 'f') file = optarg;
    }
    if (!strcmp(pname, "dubbo")) proto = P_DUBBO; else if (!strcmp(pname, "bolt")) proto = P_BOLT;
    else if (!strcmp(pname, "http")) proto = P_HTTP; else if (!strcmp(pname, "thrift")) proto = P_THRIFT;
    else if (!strcmp(pname, "kafka")) proto = P_KAFKA; else return 2;
    FILE *f = fopen(file, "rb"); if (!f) { perror("template"); return 1; }
    resp = malloc(1 << 20); resp_len = fread(resp, 1, 1 << 20, f); fclose(f);

    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("bind"); return 1; }
    listen(ls, 4096);
    socklen_t sl = sizeof sa; getsockname(ls, (struct sockaddr *)&sa, &sl);
    printf("ready %d\n", ntohs(sa.sin_port)); fflush(stdout);
    fcntl(ls, F_SETFL, O_NONBLOCK);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls}; epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    buf_t **bufs = calloc(65536, sizeof *bufs);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int e = 0; e < n; e++) {
            int fd = evs[e].data.fd;
            if (fd == ls) {
                for (;;) { int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK); if (c < 0) break;
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    if (c >= 65536) { close(c); continue; }
                    bufs[c] = calloc(1, sizeof(buf_t));
                    struct epoll_event ce = {.events = EPOLLIN, .data.fd = c}; epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce); }
                continue;
            }
            buf_t *c = bufs[fd];
            if (evs[e].events & EPOLLOUT) {
                while (c->wo < c->wl) { ssize_t w = write(fd, c->w + c->wo, c->wl - c->wo); if (w <= 0) break; c->wo += w; }
                if (c->wo == c->wl) { c->wl = c->wo = 0; struct epoll_event ce = {.events = EPOLLIN, .data.fd = fd}; epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ce); }
                continue;
            }
            ensure(&c->r, &c->rc, c->rl + 65536);
            ssize_t r = read(fd, c->r + c->rl, c->rc - c->rl);
            if (r <= 0) { if (r < 0 && errno == EAGAIN) continue; close(fd); free(c->r); free(c->w); free(c); bufs[fd] = NULL; continue; }
            c->rl += r;
            size_t pos = 0; long l;
            while ((l = req_len(c->r + pos, c->rl - pos)) > 0) {
                const uint8_t *q = c->r + pos;
                int oneway = (proto == P_DUBBO && !(q[2] & 0x40)) || (proto == P_BOLT && q[q[0] == 2 ? 2 : 1] == 2);
                if (!oneway) answer(c, q);
                pos += l;
            }
            if (l < 0) { close(fd); bufs[fd] = NULL; continue; }
            memmove(c->r, c->r + pos, c->rl - pos); c->rl -= pos;
            while (c->wo < c->wl) { ssize_t w = write(fd, c->w + c->wo, c->wl - c->wo); if (w <= 0) break; c->wo += w; }
            if (c->wo == c->wl) c->wl = c->wo = 0;
            else { struct epoll_event ce = {.events = EPOLLIN | EPOLLOUT, .data.fd = fd}; epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ce); }
        }
    }
}
