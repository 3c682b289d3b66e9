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

#include "clock.h"
#include "xalloc.h"

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
    /* durable before the checkpoint moves past these records */
    if (fdatasync(fd) != 0) {
        int e = errno;
        close(fd);
        return errbuf_set(err, "dead-letter file %s: sync: %s", path, strerror(e));
    }
    return close(fd) == 0 ? 0 : errbuf_set(err, "dead-letter file %s: close: %s", path, strerror(errno));
}

int deadletter_write_file(const policy_config_t *p, const deadletter_info_t *info, const batch_t *b, size_t from,
                          size_t to, errbuf_t *err)
{
    buf_t lines = BUF_INIT;
    for (size_t i = from; i < to; i++) deadletter_format(&lines, info, b, i);
    int rc = deadletter_append(p->dead_letter_file, p->dead_letter_max_bytes, &lines, err);
    buf_free(&lines);
    return rc;
}

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
