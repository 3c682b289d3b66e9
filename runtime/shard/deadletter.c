#include "deadletter.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/tpool.h"
#include "base/xalloc.h"

/* Replaces bytes that would make the JSON line invalid UTF-8 (errors and
 * partition keys come from outside). Caller frees. */
static char *deadletter_clean_text(const char *s, size_t n)
{
    char *out = xmalloc(n + 1); /* owned by the caller */
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        int ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++) ok = ((unsigned char)s[i + k] >> 6) == 2;
        if (ok && c != 0) {
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        } else {
            out[o++] = '?';
            i++;
        }
    }
    out[o] = '\0';
    return out;
}

static char *deadletter_base64(const char *p, size_t n)
{
    char *out = xmalloc(4 * ((n + 2) / 3) + 1); /* owned by the caller */
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)p, (int)n);
    return out;
}

void deadletter_format(buf_t *out, const deadletter_info_t *info, const batch_t *b, size_t i)
{
    const batch_record_t *r = &b->recs[i];
    cJSON *o = cJSON_CreateObject();
    char *pkey = deadletter_clean_text(batch_pkey(b, i), r->pkey_len);
    char *data = deadletter_base64(batch_data(b, i), r->data_len);
    char *error = deadletter_clean_text(info->error ? info->error : "", info->error ? strlen(info->error) : 0);
    char *tb = deadletter_clean_text(info->traceback ? info->traceback : "",
                                     info->traceback ? strlen(info->traceback) : 0);
    char now[40];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(o, "stream", info->stream);
    cJSON_AddStringToObject(o, "shard", info->shard);
    cJSON_AddStringToObject(o, "sequenceNumber", batch_seq(b, i));
    cJSON_AddNumberToObject(o, "subSequenceNumber", (double)r->sub_seq);
    cJSON_AddStringToObject(o, "partitionKey", pkey);
    cJSON_AddStringToObject(o, "data", data);
    cJSON_AddNumberToObject(o, "approximateArrivalTimestamp", (double)r->arrival_ms);
    cJSON_AddStringToObject(o, "error", error);
    cJSON_AddStringToObject(o, "traceback", tb);
    cJSON_AddNumberToObject(o, "attempts", (double)info->attempts);
    cJSON_AddStringToObject(o, "worker", info->worker ? info->worker : "");
    cJSON_AddStringToObject(o, "time", now);
    char *line = cJSON_PrintUnformatted(o);
    if (!line) xalloc_oom(0);
    buf_append_str(out, line);
    buf_append_char(out, '\n');
    free(line);
    cJSON_Delete(o);
    free(pkey);
    free(data);
    free(error);
    free(tb);
}

/* Moves a full file aside (path.<unix time>) so the next write starts a new one. */
static void deadletter_rotate(const char *path, int64_t max_bytes)
{
    struct stat st;
    if (stat(path, &st) != 0 || st.st_size < max_bytes) return;
    char dst[4096];
    snprintf(dst, sizeof dst, "%s.%lld", path, (long long)clock_wall_ms());
    if (rename(path, dst) != 0) return; /* keep appending: never lose a record over rotation */
}

static int deadletter_is_regular(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

static int deadletter_append(const char *path, int64_t max_bytes, const buf_t *lines, errbuf_t *err)
{
    deadletter_rotate(path, max_bytes);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return errbuf_set(err, "dead-letter file %s: %s", path, strerror(errno));
    size_t off = 0;
    while (off < lines->len) {
        ssize_t n = write(fd, lines->data + off, lines->len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int e = errno;
            close(fd);
            return errbuf_set(err, "dead-letter file %s: write: %s", path, strerror(e));
        }
        off += (size_t)n;
    }
    /* durable before the checkpoint moves past these records; a pipe or a
     * terminal (dead_letter.file = "/dev/stdout") has nothing to sync */
    if (fdatasync(fd) != 0 && !(errno == EINVAL && !deadletter_is_regular(fd))) {
        int e = errno;
        close(fd);
        return errbuf_set(err, "dead-letter file %s: sync: %s", path, strerror(e));
    }
    return close(fd) == 0 ? 0 : errbuf_set(err, "dead-letter file %s: close: %s", path, strerror(errno));
}

/* ---- the writer thread ------------------------------------------------------ */

struct deadletter_writer {
    tpool_t *thread;
};

typedef struct deadletter_write {
    tpool_job_t job;             /* first: the pool's handle */
    char *path;                  /* owned */
    int64_t max_bytes;
    buf_t lines;                 /* owned */
    deadletter_done_cb done;
    void *ud;
    int rc;
    errbuf_t err;
} deadletter_write_t;

static void deadletter_write_run(tpool_job_t *job)
{
    deadletter_write_t *wr = (deadletter_write_t *)job;
    wr->rc = deadletter_append(wr->path, wr->max_bytes, &wr->lines, &wr->err);
}

static void deadletter_write_done(tpool_job_t *job)
{
    deadletter_write_t *wr = (deadletter_write_t *)job;
    wr->done(wr->ud, wr->rc, wr->rc ? wr->err.msg : NULL);
    free(wr->path);
    buf_free(&wr->lines);
    free(wr);
}

deadletter_writer_t *deadletter_writer_new(struct ev_loop *loop)
{
    tpool_t *thread = tpool_new(loop, 1, "dead_letter");
    if (!thread) return NULL;
    deadletter_writer_t *w = xcalloc(1, sizeof *w); /* owned by the caller: deadletter_writer_free */
    w->thread = thread;
    return w;
}

void deadletter_writer_free(deadletter_writer_t *w)
{
    if (!w) return;
    tpool_free(w->thread);
    free(w);
}

size_t deadletter_writer_busy(const deadletter_writer_t *w)
{
    return tpool_busy(w->thread);
}

void deadletter_writer_append(deadletter_writer_t *w, const policy_config_t *p, buf_t *lines,
                              deadletter_done_cb done, void *ud)
{
    deadletter_write_t *wr = xcalloc(1, sizeof *wr); /* freed after done runs */
    wr->job = (tpool_job_t){.run = deadletter_write_run, .done = deadletter_write_done};
    wr->path = xstrdup(p->dead_letter_file);
    wr->max_bytes = p->dead_letter_max_bytes;
    wr->lines = *lines; /* moved: owned by wr */
    *lines = (buf_t)BUF_INIT;
    wr->done = done;
    wr->ud = ud;
    tpool_submit(w->thread, &wr->job);
}

/* ---- dlq replay ------------------------------------------------------------- */

int deadletter_parse_line(const char *line, deadletter_record_t *out, errbuf_t *err)
{
    memset(out, 0, sizeof *out);
    cJSON *o = cJSON_Parse(line);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(o, "data");
    const cJSON *pkey = cJSON_GetObjectItemCaseSensitive(o, "partitionKey");
    if (!o || !cJSON_IsString(data) || !cJSON_IsString(pkey) || !*pkey->valuestring) {
        cJSON_Delete(o);
        return errbuf_set(err, "not a dead-letter line (needs string fields data and partitionKey)");
    }
    size_t n = strlen(data->valuestring);
    if (n % 4) {
        cJSON_Delete(o);
        return errbuf_set(err, "data is not base64");
    }
    out->data = xmalloc(n / 4 * 3 + 1); /* owned by out */
    int len = EVP_DecodeBlock((unsigned char *)out->data, (const unsigned char *)data->valuestring, (int)n);
    if (len < 0) {
        cJSON_Delete(o);
        deadletter_record_clear(out);
        return errbuf_set(err, "data is not base64");
    }
    /* EVP_DecodeBlock counts padding bytes as data: take them off */
    if (n >= 1 && data->valuestring[n - 1] == '=') len--;
    if (n >= 2 && data->valuestring[n - 2] == '=') len--;
    out->data_len = (size_t)len;
    out->pkey = xstrdup(pkey->valuestring);
    cJSON_Delete(o);
    return 0;
}

void deadletter_record_clear(deadletter_record_t *r)
{
    free(r->data);
    free(r->pkey);
    memset(r, 0, sizeof *r);
}
