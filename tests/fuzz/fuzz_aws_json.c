/* fuzz_aws_json: libFuzzer harness for the parsers of AWS responses: Kinesis
 * (source/kinesis_json: GetRecords, ListShards, PutRecords, SubscribeToShardEvent), DynamoDB lease rows (lease/lease_ddb), on the generic
 * rules of aws/awsjson, and base64.
 *
 * The first byte picks the parser, the rest is the body. Checks, beyond
 * ASan/UBSan and LeakSanitizer: a failed parse leaves nothing allocated in
 * its outputs; a successful GetRecords batch is self-consistent (every record
 * inside the arena, NUL-terminated fields); every lease of a Scan has a key;
 * a PutRecords answer flags exactly the entries it counts as refused.
 *
 *   make fuzz                    (FUZZ_TIME=60 for longer; default 30 s per harness)
 * The sources it links are FUZZ_AWS_SRC in the Makefile. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base64.h"
#include "lease/lease_ddb.h"
#include "record/batch.h"
#include "source/kinesis_json.h"

static void check_batch(const batch_t *b)
{
    if (b->count > b->cap || b->arena_len > b->arena_cap) abort();
    for (size_t i = 0; i < b->count; i++) {
        const batch_record_t *r = &b->recs[i];
        if (r->data_off + r->data_len >= b->arena_len || r->pkey_off + r->pkey_len >= b->arena_len ||
            r->seq_off + r->seq_len >= b->arena_len)
            abort();
        if (batch_data(b, i)[r->data_len] || batch_pkey(b, i)[r->pkey_len] || batch_seq(b, i)[r->seq_len]) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    errbuf_t err;
    switch (data[0] % 6) {
    case 0: {
        source_records_t r = {0};
        if (kinesis_json_get_records(body, len, &r, &err) == AWSJSON_OK) {
            check_batch(r.batch);
        } else if (r.batch || r.next_iterator) {
            abort();
        }
        batch_free(r.batch);
        free(r.next_iterator);
        break;
    }
    case 1: {
        source_shard_list_t *l = calloc(1, sizeof *l);
        char *tok = NULL;
        if (kinesis_json_list_shards(body, len, l, &tok, &err) != AWSJSON_OK && (tok || l->count)) abort();
        for (size_t i = 0; i < l->count; i++)
            if (!l->shards[i].id || !l->shards[i].start_hash) abort();
        free(tok);
        source_shard_list_free(l);
        break;
    }
    case 2: {
        lease_list_t *l = calloc(1, sizeof *l);
        char *last = NULL;
        if (lease_ddb_scan(body, len, l, &last, &err) == AWSJSON_OK) {
            for (size_t i = 0; i < l->count; i++)
                if (!l->leases[i].key || !l->leases[i].shard) abort();
            if (last) {
                cJSON *k = cJSON_Parse(last); /* must round-trip as the next request's key */
                if (!k) abort();
                cJSON_Delete(k);
            }
        } else if (last || l->count) {
            abort();
        }
        free(last);
        lease_list_free(l);
        break;
    }
    case 3: {
        /* PutRecords for a call of 1 to 4 records: refusals counted as flagged */
        size_t n = (size_t)(data[0] / 6 % 4) + 1;
        unsigned char refused[4];
        kinesis_put_result_t r;
        if (kinesis_json_put_result(body, len, n, refused, &r, &err) == AWSJSON_OK) {
            size_t k = 0;
            for (size_t i = 0; i < n; i++) k += refused[i];
            if (k != r.refused || (r.refused == 0) != (r.first_error[0] == '\0' && !r.retryable)) abort();
        }
        break;
    }
    case 4: {
        /* a SubscribeToShardEvent payload (enhanced fan-out) */
        source_records_t r = {0};
        char **kids = NULL;
        size_t nkids = 0;
        if (kinesis_json_subscribe_event(body, len, &r, &kids, &nkids, &err) == AWSJSON_OK) {
            check_batch(r.batch);
            for (size_t i = 0; i < nkids; i++)
                if (!kids[i] || !*kids[i]) abort();
        } else if (r.batch || r.next_iterator || kids || nkids) {
            abort();
        }
        for (size_t i = 0; i < nkids; i++) free(kids[i]);
        free(kids);
        batch_free(r.batch);
        free(r.next_iterator);
        break;
    }
    default: {
        uint8_t *out = malloc(base64_decoded_max(len));
        long n = base64_decode(body, len, out);
        if (n >= 0) {
            buf_t b = BUF_INIT;
            if (base64_encode(&b, out, (size_t)n) || b.len != len || memcmp(b.data ? b.data : "", body, len))
                abort(); /* strict decoding accepts only the canonical form */
            buf_free(&b);
        }
        free(out);
        break;
    }
    }
    return 0;
}
