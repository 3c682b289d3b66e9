#include "source.h"

#include <stdlib.h>
#include <string.h>

static const char *const source_pos_names[] = {
    [POS_TRIM_HORIZON] = "TRIM_HORIZON",     [POS_LATEST] = "LATEST",
    [POS_AT_TIMESTAMP] = "AT_TIMESTAMP",     [POS_AT_SEQUENCE] = "AT_SEQUENCE_NUMBER",
    [POS_AFTER_SEQUENCE] = "AFTER_SEQUENCE_NUMBER",
};

const char *source_pos_name(source_pos_kind_t k)
{
    return source_pos_names[k];
}

const char *source_err_name(source_err_t e)
{
    switch (e) {
    case SOURCE_OK: return "ok";
    case SOURCE_ERETRY: return "retry";
    case SOURCE_EEXPIRED: return "expired_iterator";
    case SOURCE_ENOTFOUND: return "not_found";
    case SOURCE_EFATAL: return "fatal";
    }
    return "unknown";
}

void source_shard_clear(source_shard_t *s)
{
    free(s->id);
    free(s->parent);
    free(s->adjacent_parent);
    free(s->start_hash);
    free(s->end_hash);
    free(s->start_seq);
    free(s->end_seq);
    memset(s, 0, sizeof *s);
}

void source_shard_list_free(source_shard_list_t *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->count; i++) source_shard_clear(&l->shards[i]);
    free(l->shards);
    free(l);
}

const source_shard_t *source_shard_find(const source_shard_list_t *l, const char *id)
{
    for (size_t i = 0; l && i < l->count; i++)
        if (!strcmp(l->shards[i].id, id)) return &l->shards[i];
    return NULL;
}
