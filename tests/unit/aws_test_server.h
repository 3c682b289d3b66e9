/* A scripted HTTP/1.1 server for the aws_http and aws_cred tests.
 *
 * Bound to 127.0.0.1 on an ephemeral port, never anything else. One thread
 * accepts, one thread per connection serves keep-alive requests. The test's
 * handler decides each answer: respond, stall (never answer), reset the
 * connection (RST), close it without a word, or stream: the body in chunks
 * (Transfer-Encoding: chunked) `stream_ms` apart, then the end or a stall. The handler runs with the
 * server's mutex held; the test reads the recorded requests through
 * ts_lock()/ts_unlock() or after ts_stop(). Header-only, static: included by
 * each test binary; aws_fixture.h builds each test's fixture around it. */
#ifndef SHARDRUN_AWS_TEST_SERVER_H
#define SHARDRUN_AWS_TEST_SERVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define TS_MAX_REQS 32
#define TS_MAX_CONNS 64

typedef enum { TS_RESPOND, TS_STALL, TS_RESET, TS_CLOSE, TS_STREAM } ts_action_t;

typedef struct ts_request {
    char method[16];
    char target[2048]; /* path and query */
    char headers[8192]; /* raw header lines, CRLF-separated */
    char body[16384];
    size_t body_len;
    int conn; /* connection number, from 1 */
} ts_request_t;

typedef struct ts_response {
    ts_action_t action;
    int status;
    char headers[2048]; /* extra "Name: value\r\n" lines */
    char body[16384];
    /* TS_STREAM: body is sent in stream_pieces equal chunks, the first at
     * once, then one every stream_ms; then the body ends, or the server
     * stalls (stream_stall) */
    int stream_pieces, stream_ms, stream_stall;
} ts_response_t;

typedef struct ts_server ts_server_t;
typedef void (*ts_handler_t)(ts_server_t *s, const ts_request_t *req, ts_response_t *resp);

struct ts_server {
    int lfd, stop_pipe[2], port;
    char base[64]; /* "http://127.0.0.1:PORT" */
    pthread_t acceptor;
    pthread_t conns[TS_MAX_CONNS];
    int nconns;
    pthread_mutex_t mu;
    ts_handler_t handler;
    void *ud;
    const char *greeting; /* if set: written at once on accept, then the connection closes */
    ts_request_t reqs[TS_MAX_REQS]; /* the first TS_MAX_REQS requests */
    int nreqs;
};

typedef struct ts_conn_arg {
    ts_server_t *s;
    int fd, num;
} ts_conn_arg_t;

static void ts_lock(ts_server_t *s) { pthread_mutex_lock(&s->mu); }
static void ts_unlock(ts_server_t *s) { pthread_mutex_unlock(&s->mu); }

/* Value of header `name` in `req` into out (""), returns 1 when present. */
static inline int ts_header(const ts_request_t *req, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    out[0] = '\0';
    for (const char *p = req->headers; *p;) {
        const char *e = strstr(p, "\r\n");
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > nl && !strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') v++;
            snprintf(out, n, "%.*s", (int)(len - (size_t)(v - p)), v);
            return 1;
        }
        if (!e) break;
        p = e + 2;
    }
    return 0;
}

/* Waits for the fd to be readable; 0 = readable, -1 = stop requested or error. */
static int ts_wait(ts_server_t *s, int fd)
{
    struct pollfd p[2] = {{fd, POLLIN, 0}, {s->stop_pipe[0], POLLIN, 0}};
    for (;;) {
        int r = poll(p, 2, -1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 || (p[1].revents & POLLIN)) return -1;
        return 0;
    }
}

/* Reads one request; 0 = ok, -1 = closed/stop. `pending` carries bytes read ahead. */
static int ts_read_request(ts_server_t *s, int fd, char *pending, size_t *plen, size_t cap, ts_request_t *req)
{
    char *end;
    pending[*plen] = '\0';
    while ((end = strstr(pending, "\r\n\r\n")) == NULL) {
        if (*plen + 1 >= cap || ts_wait(s, fd) != 0) return -1;
        ssize_t n = read(fd, pending + *plen, cap - 1 - *plen);
        if (n <= 0) return -1;
        *plen += (size_t)n;
        pending[*plen] = '\0';
    }
    size_t head = (size_t)(end - pending) + 4;
    memset(req, 0, sizeof *req);
    if (sscanf(pending, "%15s %2047s", req->method, req->target) != 2) return -1;
    const char *h = strstr(pending, "\r\n") + 2;
    snprintf(req->headers, sizeof req->headers, "%.*s", (int)(end - h), h);
    char cl[32];
    size_t want = ts_header(req, "Content-Length", cl, sizeof cl) ? (size_t)strtoul(cl, NULL, 10) : 0;
    if (want >= sizeof req->body) return -1;
    while (*plen < head + want) {
        if (*plen + 1 >= cap || ts_wait(s, fd) != 0) return -1;
        ssize_t n = read(fd, pending + *plen, cap - 1 - *plen);
        if (n <= 0) return -1;
        *plen += (size_t)n;
    }
    memcpy(req->body, pending + head, want);
    req->body_len = want;
    memmove(pending, pending + head + want, *plen - head - want);
    *plen -= head + want;
    return 0;
}

static int ts_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL); /* a client gone is an error, not SIGPIPE */
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Sleeps ms unless the server is stopping; 0 = slept, -1 = stopping. */
static int ts_sleep(ts_server_t *s, int ms)
{
    struct pollfd p = {s->stop_pipe[0], POLLIN, 0};
    return poll(&p, 1, ms) == 0 ? 0 : -1;
}

/* A TS_STREAM answer; 0 = the body ended (keep-alive), -1 = close. */
static int ts_stream(ts_server_t *s, int fd, const ts_response_t *resp)
{
    char head[4096], size[32];
    size_t blen = strlen(resp->body), pieces = resp->stream_pieces > 0 ? (size_t)resp->stream_pieces : 1;
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d X\r\nTransfer-Encoding: chunked\r\n%s\r\n", resp->status,
                     resp->headers);
    if (ts_write_all(fd, head, (size_t)n) != 0) return -1;
    for (size_t i = 0; i < pieces; i++) {
        if (i > 0 && ts_sleep(s, resp->stream_ms) != 0) return -1;
        size_t from = blen * i / pieces, to = blen * (i + 1) / pieces;
        if (to == from) continue;
        n = snprintf(size, sizeof size, "%zx\r\n", to - from);
        if (ts_write_all(fd, size, (size_t)n) != 0 || ts_write_all(fd, resp->body + from, to - from) != 0 ||
            ts_write_all(fd, "\r\n", 2) != 0)
            return -1;
    }
    if (resp->stream_stall) {
        while (ts_wait(s, fd) == 0) {
            char sink[512];
            if (read(fd, sink, sizeof sink) <= 0) break;
        }
        return -1;
    }
    return ts_write_all(fd, "0\r\n\r\n", 5);
}

static void *ts_conn_main(void *arg)
{
    ts_conn_arg_t *a = arg;
    ts_server_t *s = a->s;
    static __thread char pending[65536];
    static __thread ts_request_t req;
    static __thread ts_response_t resp;
    size_t plen = 0;
    if (s->greeting) { /* e.g. plain HTTP to a TLS client: its handshake fails */
        (void)ts_write_all(a->fd, s->greeting, strlen(s->greeting));
        close(a->fd);
        free(a);
        return NULL;
    }
    while (ts_read_request(s, a->fd, pending, &plen, sizeof pending, &req) == 0) {
        req.conn = a->num;
        memset(&resp, 0, sizeof resp);
        resp.status = 200;
        ts_lock(s);
        if (s->nreqs < TS_MAX_REQS) s->reqs[s->nreqs] = req;
        s->nreqs++;
        s->handler(s, &req, &resp);
        ts_unlock(s);
        if (resp.action == TS_STALL) {
            while (ts_wait(s, a->fd) == 0) { /* drain until the client gives up or we stop */
                char sink[512];
                if (read(a->fd, sink, sizeof sink) <= 0) break;
            }
            break;
        }
        if (resp.action == TS_RESET) {
            struct linger l = {1, 0}; /* close with RST */
            (void)setsockopt(a->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
            break;
        }
        if (resp.action == TS_CLOSE) break;
        if (resp.action == TS_STREAM) {
            if (ts_stream(s, a->fd, &resp) != 0) break;
            continue;
        }
        char head[4096];
        size_t blen = strlen(resp.body);
        int n = snprintf(head, sizeof head, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n",
                         resp.status, blen, resp.headers);
        if (ts_write_all(a->fd, head, (size_t)n) != 0 || ts_write_all(a->fd, resp.body, blen) != 0) break;
    }
    close(a->fd);
    free(a);
    return NULL;
}

static void *ts_accept_main(void *arg)
{
    ts_server_t *s = arg;
    while (ts_wait(s, s->lfd) == 0) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) continue;
        ts_lock(s);
        if (s->nconns >= TS_MAX_CONNS) {
            ts_unlock(s);
            close(fd);
            continue;
        }
        ts_conn_arg_t *a = calloc(1, sizeof *a);
        a->s = s;
        a->fd = fd;
        a->num = s->nconns + 1;
        if (pthread_create(&s->conns[s->nconns], NULL, ts_conn_main, a) == 0) s->nconns++;
        else {
            close(fd);
            free(a);
        }
        ts_unlock(s);
    }
    return NULL;
}

/* Starts a server on 127.0.0.1:<ephemeral>. Returns 0 or -1. */
static int ts_start(ts_server_t *s, ts_handler_t handler, void *ud)
{
    memset(s, 0, sizeof *s);
    s->handler = handler;
    s->ud = ud;
    pthread_mutex_init(&s->mu, NULL);
    if (pipe(s->stop_pipe) != 0) return -1;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* loopback only, never 0.0.0.0 */
    sa.sin_port = 0;
    socklen_t sl = sizeof sa;
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(s->lfd, 16) != 0 ||
        getsockname(s->lfd, (struct sockaddr *)&sa, &sl) != 0)
        return -1;
    s->port = ntohs(sa.sin_port);
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", s->port);
    return pthread_create(&s->acceptor, NULL, ts_accept_main, s) == 0 ? 0 : -1;
}

static void ts_stop(ts_server_t *s)
{
    if (write(s->stop_pipe[1], "x", 1) != 1) perror("ts_stop");
    pthread_join(s->acceptor, NULL);
    for (int i = 0; i < s->nconns; i++) pthread_join(s->conns[i], NULL);
    close(s->lfd);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
    pthread_mutex_destroy(&s->mu);
}

/* Number of requests seen so far (locked read). */
static inline int ts_count(ts_server_t *s)
{
    ts_lock(s);
    int n = s->nreqs;
    ts_unlock(s);
    return n;
}

#endif
