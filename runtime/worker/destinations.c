#include "destinations.h"

#include "base/log.h"
#include "base/xalloc.h"
#include "preflight.h"
#include "source/source_kinesis.h"
#include "source/source_local.h"

static source_t *destinations_own(const config_output_t *o, struct ev_loop *loop, aws_client_t *aws, errbuf_t *err)
{
    if (o->type == BACKEND_LOCAL) return source_local_new(loop, o->path, err);
    if (!aws) {
        errbuf_set(err, "outputs.%s: no AWS client for a kinesis output (internal: backend_aws_new)", o->name);
        return NULL;
    }
    source_kinesis_options_t opt = {.aws = aws, .region = o->region, .endpoint = o->endpoint};
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

int destinations_check(destinations_t *d, struct ev_loop *loop, errbuf_t *err)
{
    for (size_t i = 0; i < d->n; i++) {
        const output_dest_t *dest = &d->dests[i];
        char msg[1024];
        source_err_t e = preflight_stream(loop, dest->source, dest->stream, msg, sizeof msg, NULL);
        if (e == SOURCE_ENOTFOUND) {
            errbuf_set(err, "outputs.%s: stream %s does not exist (create it, or fix outputs.%s.stream): %s",
                       dest->name, dest->stream, dest->name, msg);
            return 2;
        }
        if (e != SOURCE_OK) {
            errbuf_set(err, "outputs.%s: stream %s cannot be checked: %s", dest->name, dest->stream, msg);
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
