/* jscan: a single-pass JSON reader for the hot GetRecords path.
 *
 * cJSON builds a tree of the whole response (10,000 records: some 50,000
 * nodes, each malloc'd and freed); profiling showed that tree at ~60% of the
 * Kinesis path's CPU. jscan walks the text once instead: the caller asks for
 * the next token of the shape it expects and gets strings as spans of the
 * input (unescaped into a scratch area only when they contain escapes).
 * Nothing is allocated per value. Every read is bounds-checked: malformed or
 * truncated input is an error, never a read past the end. */
#ifndef SHARDRUN_JSCAN_H
#define SHARDRUN_JSCAN_H

#include <stddef.h>
#include <stdint.h>

typedef struct jscan {
    const char *p, *end;
    const char *start;
    char *scratch;        /* unescaped strings: allocated at the first escape (capacity = input
                             size, which unescaping never exceeds); the caller frees it */
    size_t scratch_len;
    int depth;
} jscan_t;

typedef enum { JS_OBJECT, JS_ARRAY, JS_STRING, JS_NUMBER, JS_TRUE, JS_FALSE, JS_NULL, JS_BAD } jscan_type_t;

/* Reads `text`; strings with escapes are unescaped into s->scratch, which
 * the caller frees with free() when done with the strings. */
void jscan_init(jscan_t *s, const char *text, size_t len);
/* The type of the next value, without consuming it. */
jscan_type_t jscan_peek(jscan_t *s);
/* Consumes `c` ('{', '}', '[', ']', ':', ','), after whitespace; 0 or -1. */
int jscan_expect(jscan_t *s, char c);
/* 1 and consumes `c` if it comes next, else 0. */
int jscan_accept(jscan_t *s, char c);
/* A string value: *out points into the input or the scratch area; 0 or -1. */
int jscan_string(jscan_t *s, const char **out, size_t *len);
/* A number value's text, unparsed (the caller converts it); 0 or -1. */
int jscan_number_span(jscan_t *s, const char **out, size_t *len);
/* A number value as a double; 0 or -1. */
int jscan_number(jscan_t *s, double *out);
/* Skips any one value (nested up to 64 levels); 0 or -1. */
int jscan_skip(jscan_t *s);
/* 1 when only whitespace is left. */
int jscan_at_end(jscan_t *s);

#endif
