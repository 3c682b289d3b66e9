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

/* The fields every line has; data is added by the caller (or left out). */
static cJSON *deadletter_object(const deadletter_info_t *info, const batch_t *b, size_t i, size_t text_max)
{
    const batch_record_t *r = &b->recs[i];
    cJSON *o = cJSON_CreateObject();
    if (!o) xalloc_oom(0);
    size_t elen = info->error ? strlen(info->error) : 0, tlen = info->traceback ? strlen(info->traceback) : 0;
    if (text_max && elen > text_max) elen = text_max;
    if (text_max && tlen > text_max) tlen = text_max;
    char *pkey = deadletter_clean_text(batch_pkey(b, i), r->pkey_len);
    char *error = deadletter_clean_text(info->error ? info->error : "", elen);
    char *tb = deadletter_clean_text(info->traceback ? info->traceback : "", tlen);
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
    cJSON_AddNumberToObject(o, "approximateArrivalTimestamp", (double)r->arrival_ms);
    cJSON_AddStringToObject(o, "error", error);
    cJSON_AddStringToObject(o, "traceback", tb);
    cJSON_AddNumberToObject(o, "attempts", (double)info->attempts);
    cJSON_AddStringToObject(o, "worker", info->worker ? info->worker : "");
    cJSON_AddStringToObject(o, "time", now);
    free(pkey);
    free(error);
    free(tb);
    return o;
}

static void deadletter_emit(buf_t *out, cJSON *o)
{
    char *line = cJSON_PrintUnformatted(o);
    if (!line) xalloc_oom(0);
    buf_append_str(out, line);
    buf_append_char(out, '\n');
    free(line);
    cJSON_Delete(o);
}

/* Error and traceback in a metadata-only line: enough to act on, never the
 * reason it does not fit. */
#define DEADLETTER_TEXT_MAX 8192

int deadletter_format(buf_t *out, const deadletter_info_t *info, const batch_t *b, size_t i, size_t max_line)
{
    const batch_record_t *r = &b->recs[i];
    size_t b64 = 4 * ((r->data_len + 2) / 3);
    /* base64 data plus the rest of the line (escaping can grow the text
     * fields up to six times; the pkey is at most 256 bytes in Kinesis) */
    size_t others = 512 + 6 * ((info->error ? strlen(info->error) : 0) + (info->traceback ? strlen(info->traceback) : 0) +
                               r->pkey_len + r->seq_len);
    if (max_line && b64 + others > max_line) {
        cJSON *o = deadletter_object(info, b, i, DEADLETTER_TEXT_MAX);
        cJSON_AddBoolToObject(o, "dataOmitted", 1);
        cJSON_AddNumberToObject(o, "size", (double)r->data_len);
        deadletter_emit(out, o);
        return 1;
    }
    cJSON *o = deadletter_object(info, b, i, 0);
    char *data = deadletter_base64(batch_data(b, i), r->data_len);
    cJSON_AddStringToObject(o, "data", data);
    free(data);
    deadletter_emit(out, o);
    return 0;
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

/* ---- sending ---------------------------------------------------------------- */

struct deadletter {
    tpool_t *file_thread;    /* one thread for every file keeps each file's appends and rotation in order */
    source_t *source;        /* dead-letter streams are the source's */
    size_t busy;
};

/* One send in flight, freed after its callback. */
typedef struct deadletter_job {
    tpool_job_t job;         /* first: the file thread's handle */
    deadletter_t *dl;
    deadletter_done_cb done;
    void *ud;
    char *destination;
    buf_t lines;             /* JSON lines; stream records point into them */
    source_put_record_t *recs;
    size_t omitted;
    char *path;              /* file */
    int64_t max_bytes;
    int rc;
    errbuf_t err;
} deadletter_job_t;

deadletter_t *deadletter_new(struct ev_loop *loop, source_t *source)
{
    tpool_t *thread = tpool_new(loop, 1, "dead_letter");
    if (!thread) return NULL;
    deadletter_t *dl = xcalloc(1, sizeof *dl); /* owned by the caller: deadletter_free */
    dl->file_thread = thread;
    dl->source = source;
    return dl;
}

void deadletter_free(deadletter_t *dl)
{
    if (!dl) return;
    tpool_free(dl->file_thread);
    free(dl);
}

size_t deadletter_busy(const deadletter_t *dl)
{
    return dl->busy;
}

const char *deadletter_status_name(deadletter_status_t s)
{
    switch (s) {
    case DEADLETTER_SENT: return "sent";
    case DEADLETTER_ERETRY: return "retry";
    case DEADLETTER_EFATAL: return "fatal";
    }
    return "unknown";
}

static void deadletter_finish(deadletter_job_t *j, deadletter_status_t st, const char *msg)
{
    j->dl->busy--;
    deadletter_result_t r = {st, st ? (msg ? msg : "failed") : NULL, j->destination, j->omitted};
    j->done(j->ud, &r);
    buf_free(&j->lines);
    free(j->recs);
    free(j->destination);
    free(j->path);
    free(j);
}

static void deadletter_file_run(tpool_job_t *job)
{
    deadletter_job_t *j = (deadletter_job_t *)job;
    j->rc = deadletter_append(j->path, j->max_bytes, &j->lines, &j->err);
}

static void deadletter_file_done(tpool_job_t *job)
{
    deadletter_job_t *j = (deadletter_job_t *)job;
    /* disk full, a missing folder, a hung mount: all may pass; the shard waits */
    deadletter_finish(j, j->rc ? DEADLETTER_ERETRY : DEADLETTER_SENT, j->rc ? j->err.msg : NULL);
}

/* A failed put is sent again whole: dead letters are at-least-once. */
static void deadletter_stream_done(void *ud, const source_put_result_t *r)
{
    deadletter_job_t *j = ud;
    source_err_t err = r->error;
    deadletter_status_t st = err == SOURCE_OK ? DEADLETTER_SENT : err == SOURCE_ERETRY ? DEADLETTER_ERETRY
                                                                                       : DEADLETTER_EFATAL;
    char why[1200];
    if (st) snprintf(why, sizeof why, "dead-letter stream %s: %s (%s)", j->destination,
                     r->message ? r->message : "put failed", source_err_name(err));
    deadletter_finish(j, st, st ? why : NULL);
}

void deadletter_send(deadletter_t *dl, const policy_config_t *p, const deadletter_info_t *info, const batch_t *b,
                     deadletter_done_cb done, void *ud)
{
    deadletter_job_t *j = xcalloc(1, sizeof *j); /* freed after done runs */
    j->dl = dl;
    j->done = done;
    j->ud = ud;
    j->lines = (buf_t)BUF_INIT;
    dl->busy++;
    if (p->dead_letter_stream) {
        j->destination = xstrdup(p->dead_letter_stream);
        size_t *ends = xcalloc(b->count ? b->count : 1, sizeof *ends);
        for (size_t i = 0; i < b->count; i++) {
            j->omitted += (size_t)deadletter_format(&j->lines, info, b, i, DEADLETTER_MAX_RECORD);
            ends[i] = j->lines.len - 1; /* the newline is not part of the record */
        }
        j->recs = xcalloc(b->count ? b->count : 1, sizeof *j->recs); /* owned by j; point into j->lines */
        for (size_t i = 0, start = 0; i < b->count; i++) {
            j->recs[i].data = j->lines.data + start;
            j->recs[i].data_len = ends[i] - start;
            j->recs[i].pkey = b->recs[i].pkey_len ? batch_pkey(b, i) : "deadletter";
            start = ends[i] + 1;
        }
        free(ends);
        dl->source->ops->put(dl->source, p->dead_letter_stream, j->recs, b->count, deadletter_stream_done, j);
        return;
    }
    j->destination = xstrdup(p->dead_letter_file);
    for (size_t i = 0; i < b->count; i++) deadletter_format(&j->lines, info, b, i, 0);
    j->path = xstrdup(p->dead_letter_file);
    j->max_bytes = p->dead_letter_max_bytes;
    j->job = (tpool_job_t){.run = deadletter_file_run, .done = deadletter_file_done};
    tpool_submit(dl->file_thread, &j->job);
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
