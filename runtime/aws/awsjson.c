#include "awsjson.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"

/* A member of object `o`: the node if it has the wanted type, NULL when it
 * is absent or JSON null, and *bad set when it exists with another type. */
static const cJSON *aj_get(const cJSON *o, const char *name, int (*is)(const cJSON *), int *bad)
{
    const cJSON *v = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, name) : NULL;
    if (!v || cJSON_IsNull(v)) return NULL;
    if (!is(v)) {
        *bad = 1;
        return NULL;
    }
    return v;
}

static int aj_is_string(const cJSON *v) { return cJSON_IsString(v) && v->valuestring; }
static int aj_is_array(const cJSON *v) { return cJSON_IsArray(v); }
static int aj_is_object(const cJSON *v) { return cJSON_IsObject(v); }
static int aj_is_number(const cJSON *v) { return cJSON_IsNumber(v); }

const char *awsjson_str(const cJSON *o, const char *name, int *bad)
{
    const cJSON *v = aj_get(o, name, aj_is_string, bad);
    return v ? v->valuestring : NULL;
}

const cJSON *awsjson_array(const cJSON *o, const char *name, int *bad)
{
    return aj_get(o, name, aj_is_array, bad);
}

const cJSON *awsjson_object(const cJSON *o, const char *name, int *bad)
{
    return aj_get(o, name, aj_is_object, bad);
}

int awsjson_number(const cJSON *o, const char *name, double *out, int *bad)
{
    const cJSON *v = aj_get(o, name, aj_is_number, bad);
    if (v) *out = v->valuedouble;
    return v != NULL;
}

char *awsjson_strdup(const cJSON *o, const char *name, int *bad)
{
    const char *s = awsjson_str(o, name, bad);
    return s ? xstrdup(s) : NULL; /* the caller's */
}

int awsjson_scan_string(jscan_t *js, const char **out, size_t *len, int *bad)
{
    jscan_type_t t = jscan_peek(js);
    if (t == JS_STRING) return jscan_string(js, out, len) ? -2 : 1;
    if (jscan_skip(js)) return -2;
    if (t == JS_NULL) return 0;
    *bad = 1;
    return -1;
}

int awsjson_scan_number(jscan_t *js, double *out, int *bad)
{
    jscan_type_t t = jscan_peek(js);
    if (t == JS_NUMBER) return jscan_number(js, out) ? -2 : 1;
    if (jscan_skip(js)) return -2;
    if (t == JS_NULL) return 0;
    *bad = 1;
    return -1;
}

const cJSON *awsjson_ddb_get(const cJSON *item, const char *name, const char *type, int *bad)
{
    const cJSON *a = cJSON_IsObject(item) ? cJSON_GetObjectItemCaseSensitive(item, name) : NULL;
    if (!a || cJSON_IsNull(a)) return NULL;
    if (!cJSON_IsObject(a)) {
        *bad = 1;
        return NULL;
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "NULL"))) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(a, type);
    int ok = !strcmp(type, "SS") ? cJSON_IsArray(v) : aj_is_string(v);
    if (!ok) {
        *bad = 1;
        return NULL;
    }
    return v;
}

void awsjson_ddb_attr(cJSON *item, const char *name, const char *type, const char *value)
{
    cJSON *a = cJSON_AddObjectToObject(item, name);
    if (!a || !cJSON_AddStringToObject(a, type, value)) xalloc_oom(0);
}

void awsjson_ddb_attr_n(cJSON *item, const char *name, int64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%lld", (long long)v);
    awsjson_ddb_attr(item, name, "N", num);
}

cJSON *awsjson_ddb_ss(char *const *ids, size_t n)
{
    cJSON *a = cJSON_CreateObject(), *arr = a ? cJSON_AddArrayToObject(a, "SS") : NULL;
    if (!arr) xalloc_oom(0);
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(arr, cJSON_CreateString(ids[i]));
    return a;
}

int awsjson_parse_i64(const char *s, int64_t *out)
{
    if (!s || !*s) return -1;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !end || *end) return -1;
    *out = (int64_t)v;
    return 0;
}
