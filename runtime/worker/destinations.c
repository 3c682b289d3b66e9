#include "destinations.h"

#include <ev.h>
#include <stdio.h>

#include "base/log.h"
#include "base/xalloc.h"
#include "source/source_kinesis.h"
#include "source/source_local.h"

static source_t *destinations_own(const config_output_t *o, struct ev_loop *loop, aws_client_t *aws, errbuf_t *err)
{
    if (o->type == BACKEND_LOCAL) return source_local_new(loop, o->path, err);
    if (!aws) {
        errbuf_set(err, "outputs.%s: no AWS client for a kinesis output (internal: backend_aws_new)", o->name);
        return NULL;
    }
    source_kinesis_options_t opt = {aws, o->region, o->endpoint};
    return source_kinesis_new(loop, &opt, err);
}

int destinations_open(destinations_t *d, const config_t *cfg, struct ev_loop *loop, source_t *source,
                      aws_client_t *aws, errbuf_t *err)
{
    size_t n = cfg->noutputs;
    d->n = n;
    d->dests = xcalloc(n ? n : 1, sizeof *d->dests); /* owned by d: destinations_close */
    d->names = xcalloc(n ? n : 1, sizeof *d->names);
    d->own = xcalloc(n ? n : 1, sizeof *d->own);
    for (size_t i = 0; i < n; i++) {
        const config_output_t *o = &cfg->outputs[i];
        output_dest_t *dest = &d->dests[i];
        d->names[i] = o->name;
        dest->name = o->name;
        dest->stream = o->stream;
        dest->source = source;
        if (o->own) {
            errbuf_t why;
            d->own[i] = destinations_own(o, loop, aws, &why);
            if (!d->own[i]) return errbuf_set(err, "outputs.%s: %s", o->name, why.msg);
            dest->source = d->own[i];
        }
        int kinesis = o->type == BACKEND_AWS;
        dest->max_records = kinesis ? KINESIS_PUT_MAX_RECORDS : DESTINATIONS_LOCAL_PUT_RECORDS;
        dest->max_bytes = kinesis ? KINESIS_PUT_MAX_BYTES : DESTINATIONS_LOCAL_PUT_BYTES;
    }
    return 0;
}

typedef struct destinations_probe {
    int done;
    source_err_t err;
    char msg[1024];
} destinations_probe_t;

static void destinations_listed(void *ud, source_err_t err, const char *message, source_shard_list_t *shards)
{
    destinations_probe_t *p = ud;
    p->done = 1;
    p->err = err;
    snprintf(p->msg, sizeof p->msg, "%s", message ? message : source_err_name(err));
    source_shard_list_free(shards);
}

static void destinations_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
}

/* Runs the loop for at most `s` seconds, or until *flag (NULL: the whole time). */
static void destinations_run(struct ev_loop *loop, const int *flag, double s)
{
    ev_timer t;
    ev_timer_init(&t, destinations_tick, s, 0.0);
    ev_timer_start(loop, &t);
    while ((!flag || !*flag) && ev_is_active(&t)) ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
}

int destinations_check(destinations_t *d, struct ev_loop *loop, errbuf_t *err)
{
    for (size_t i = 0; i < d->n; i++) {
        const output_dest_t *dest = &d->dests[i];
        destinations_probe_t p;
        for (int attempt = 1;; attempt++) {
            p = (destinations_probe_t){0};
            source_list_shards(dest->source, dest->stream, destinations_listed, &p);
            destinations_run(loop, &p.done, DESTINATIONS_CHECK_MAX_S);
            if (!p.done) {
                errbuf_set(err, "outputs.%s: stream %s: no answer within %.0f s", dest->name, dest->stream,
                           DESTINATIONS_CHECK_MAX_S);
                return 1;
            }
            if (p.err != SOURCE_ERETRY || attempt == DESTINATIONS_CHECK_TRIES) break;
            char q[1100];
            log_warn("output_check_retry", "output=%s destination=%s attempt=%d error=%s", dest->name, dest->stream,
                     attempt, log_quote(p.msg, q, sizeof q));
            destinations_run(loop, NULL, 1.0);
        }
        if (p.err == SOURCE_ENOTFOUND) {
            errbuf_set(err, "outputs.%s: stream %s does not exist (create it, or fix outputs.%s.stream): %s",
                       dest->name, dest->stream, dest->name, p.msg);
            return 2;
        }
        if (p.err != SOURCE_OK) {
            errbuf_set(err, "outputs.%s: stream %s cannot be checked: %s", dest->name, dest->stream, p.msg);
            return 1;
        }
        log_info("output_found", "output=%s destination=%s", dest->name, dest->stream);
    }
    return 0;
}

void destinations_close(destinations_t *d)
{
    for (size_t i = 0; d->own && i < d->n; i++) source_destroy(d->own[i]);
    free(d->dests);
    free(d->names);
    free(d->own);
    d->dests = NULL;
    d->names = NULL;
    d->own = NULL;
    d->n = 0;
}
