#include "config_lines.h"

#include <lauxlib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/xalloc.h"

typedef enum { TK_NAME, TK_KEYWORD, TK_STRING, TK_NUMBER, TK_OP } tk_kind_t;

typedef struct tk {
    tk_kind_t kind;
    size_t start, end; /* bytes of src */
    int line;
} tk_t;

typedef struct cl_field {
    int ctor;
    int line;
    char *key; /* NULL: list item `index` */
    size_t index;
} cl_field_t;

struct config_lines {
    int config_ref; /* registry: the config's table, its globals' lines, table -> constructor */
    int globals_ref;
    int ctors_ref;
    int *ctor_line; /* [ctor - 1] */
    size_t nctors;
    cl_field_t *fields;
    size_t nfields, cap;
};

/* ---- the scan: Lua 5.1's lexical grammar, enough to find tokens ------------ */

typedef struct lexer {
    const char *s;
    size_t len, i;
    int line;
    tk_t *toks;
    size_t ntoks, cap;
} lexer_t;

/* A line break as Lua counts it: \n, \r, \r\n or \n\r is one. */
static int lex_newline(lexer_t *lx)
{
    char c = lx->s[lx->i];
    if (c != '\n' && c != '\r') return 0;
    lx->i++;
    if (lx->i < lx->len && (lx->s[lx->i] == '\n' || lx->s[lx->i] == '\r') && lx->s[lx->i] != c) lx->i++;
    lx->line++;
    return 1;
}

/* The level of a long bracket opening at i ("[[" 0, "[==[" 2), or -1. */
static int lex_long_level(const lexer_t *lx, size_t i)
{
    if (i >= lx->len || lx->s[i] != '[') return -1;
    size_t j = i + 1;
    while (j < lx->len && lx->s[j] == '=')
        j++;
    return j < lx->len && lx->s[j] == '[' ? (int)(j - i - 1) : -1;
}

/* Skips a long string or comment from its opening bracket; -1 if unfinished. */
static int lex_skip_long(lexer_t *lx, int level)
{
    lx->i += (size_t)level + 2;
    while (lx->i < lx->len) {
        if (lex_newline(lx)) continue;
        if (lx->s[lx->i] == ']') {
            size_t j = lx->i + 1;
            while (j < lx->len && lx->s[j] == '=')
                j++;
            if (j < lx->len && lx->s[j] == ']' && (int)(j - lx->i - 1) == level) {
                lx->i = j + 1;
                return 0;
            }
        }
        lx->i++;
    }
    return -1;
}

static int lex_skip_short_string(lexer_t *lx)
{
    char q = lx->s[lx->i++];
    while (lx->i < lx->len) {
        char c = lx->s[lx->i];
        if (c == q) {
            lx->i++;
            return 0;
        }
        if (c == '\n' || c == '\r') return -1;
        if (c == '\\' && lx->i + 1 < lx->len) {
            lx->i++;
            if (!lex_newline(lx)) lx->i++;
            continue;
        }
        lx->i++;
    }
    return -1;
}

static int is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

static int is_keyword(const char *s, size_t n)
{
    static const char *const kw[] = {"and",      "break",  "do",   "else", "elseif", "end",   "false", "for",
                                     "function", "goto",   "if",   "in",   "local",  "nil",   "not",   "or",
                                     "repeat",   "return", "then", "true", "until",  "while", NULL};
    for (const char *const *k = kw; *k; k++)
        if (strlen(*k) == n && !memcmp(*k, s, n)) return 1;
    return 0;
}

static void lex_push(lexer_t *lx, tk_kind_t kind, size_t start, int line)
{
    if (lx->ntoks == lx->cap) {
        lx->cap = lx->cap ? lx->cap * 2 : 256;
        lx->toks = xrealloc(lx->toks, lx->cap * sizeof *lx->toks);
    }
    lx->toks[lx->ntoks++] = (tk_t){kind, start, lx->i, line};
}

/* Tokenizes the whole source; -1 on an unfinished string or comment. */
static int lex_all(lexer_t *lx)
{
    while (lx->i < lx->len) {
        const char *s = lx->s;
        char c = s[lx->i];
        size_t start = lx->i;
        int line = lx->line;
        if (lex_newline(lx)) continue;
        if (c == ' ' || c == '\t' || c == '\f' || c == '\v') {
            lx->i++;
        } else if (c == '-' && lx->i + 1 < lx->len && s[lx->i + 1] == '-') {
            lx->i += 2;
            int level = lex_long_level(lx, lx->i);
            if (level >= 0) {
                if (lex_skip_long(lx, level)) return -1;
            } else {
                while (lx->i < lx->len && s[lx->i] != '\n' && s[lx->i] != '\r')
                    lx->i++;
            }
        } else if (c == '"' || c == '\'') {
            if (lex_skip_short_string(lx)) return -1;
            lex_push(lx, TK_STRING, start, line);
        } else if (c == '[' && lex_long_level(lx, lx->i) >= 0) {
            if (lex_skip_long(lx, lex_long_level(lx, lx->i))) return -1;
            lex_push(lx, TK_STRING, start, line);
        } else if ((c >= '0' && c <= '9') ||
                   (c == '.' && lx->i + 1 < lx->len && s[lx->i + 1] >= '0' && s[lx->i + 1] <= '9')) {
            /* digits, letters (hex, exponents, LuaJIT's LL/ULL/i), dots, and a
             * sign right after an exponent letter */
            lx->i++;
            while (lx->i < lx->len && (is_name_char(s[lx->i]) || s[lx->i] == '.' ||
                                       ((s[lx->i] == '+' || s[lx->i] == '-') && strchr("eEpP", s[lx->i - 1]))))
                lx->i++;
            lex_push(lx, TK_NUMBER, start, line);
        } else if (is_name_start(c)) {
            while (lx->i < lx->len && is_name_char(s[lx->i]))
                lx->i++;
            lex_push(lx, is_keyword(s + start, lx->i - start) ? TK_KEYWORD : TK_NAME, start, line);
        } else {
            /* operators: the two- and three-character ones matter only for
             * telling `=` (a field) from `==` */
            lx->i++;
            if (lx->i < lx->len && strchr("=~<>", c) && s[lx->i] == '=')
                lx->i++;
            else if (c == '.' && lx->i < lx->len && s[lx->i] == '.') {
                lx->i++;
                if (lx->i < lx->len && s[lx->i] == '.') lx->i++;
            } else if (c == ':' && lx->i < lx->len && s[lx->i] == ':')
                lx->i++;
            lex_push(lx, TK_OP, start, line);
        }
    }
    return 0;
}

/* ---- the rewrite ---------------------------------------------------------------- */

static int tk_is(const lexer_t *lx, size_t k, const char *text)
{
    if (k >= lx->ntoks) return 0;
    const tk_t *t = &lx->toks[k];
    size_t n = strlen(text);
    return t->end - t->start == n && !memcmp(lx->s + t->start, text, n);
}

static int tk_is_op(const lexer_t *lx, size_t k, const char *text)
{
    return k < lx->ntoks && lx->toks[k].kind == TK_OP && tk_is(lx, k, text);
}

static void cl_add(config_lines_t *cl, int ctor, int line, char *key, size_t index)
{
    if (cl->nfields == cl->cap) {
        cl->cap = cl->cap ? cl->cap * 2 : 64;
        cl->fields = xrealloc(cl->fields, cl->cap * sizeof *cl->fields);
    }
    cl->fields[cl->nfields++] = (cl_field_t){ctor, line, key, index};
}

/* A constructor being rewritten. `nest` counts brackets, parentheses and
 * blocks (function ... end) opened inside it: a `,` or `;` separates its
 * items only at nest 0. */
typedef struct frame {
    int ctor;
    int call; /* `f{...}`: closes with "))" */
    int nest;
    int item_next; /* the next token starts an item */
    size_t items;
} frame_t;

/* Notes the item that starts at token k of constructor f. */
static void cl_note_item(config_lines_t *cl, const lexer_t *lx, size_t k, frame_t *f)
{
    const tk_t *t = &lx->toks[k];
    if (t->kind == TK_NAME && tk_is_op(lx, k + 1, "=")) {
        cl_add(cl, f->ctor, t->line, xstrndup(lx->s + t->start, t->end - t->start), 0);
    } else if (tk_is_op(lx, k, "[")) {
        /* ["key"] = value, for a plain string key */
        const tk_t *str = k + 1 < lx->ntoks ? &lx->toks[k + 1] : NULL;
        if (str && str->kind == TK_STRING && tk_is_op(lx, k + 2, "]") && tk_is_op(lx, k + 3, "=") &&
            (lx->s[str->start] == '"' || lx->s[str->start] == '\'') &&
            !memchr(lx->s + str->start, '\\', str->end - str->start))
            cl_add(cl, f->ctor, t->line, xstrndup(lx->s + str->start + 1, str->end - str->start - 2), 0);
    } else {
        cl_add(cl, f->ctor, t->line, NULL, ++f->items);
    }
}

/* Inserts text at byte `at` of the output (a "(" after a call's function). */
static void buf_insert(buf_t *b, size_t at, const char *text)
{
    size_t n = strlen(text);
    buf_reserve(b, n);
    memmove(b->data + at + n, b->data + at, b->len - at + 1);
    memcpy(b->data + at, text, n);
    b->len += n;
}

config_lines_t *config_lines_scan(const char *src, size_t len, char **out, size_t *outlen)
{
    lexer_t lx = {.s = src, .len = len, .line = 1};
    /* as LuaJIT's loader: a UTF-8 BOM, then a first line starting with #, are skipped */
    if (len >= 3 && !memcmp(src, "\xEF\xBB\xBF", 3)) lx.i = 3;
    if (lx.i < len && src[lx.i] == '#') {
        while (lx.i < len && !lex_newline(&lx))
            lx.i++;
    }
    size_t body = lx.i;
    if (lex_all(&lx)) {
        free(lx.toks);
        return NULL;
    }
    config_lines_t *cl = xcalloc(1, sizeof *cl); /* owned by the caller: config_lines_free */
    cl->config_ref = cl->globals_ref = cl->ctors_ref = LUA_NOREF;
    buf_t b = BUF_INIT;
    buf_append(&b, src, body);
    buf_append_str(&b, "local " CONFIG_LINES_FN " = ...; ");
    size_t copied = body;
    size_t prev_end = 0; /* output offset just after the previous token */
    frame_t *stack = NULL;
    size_t depth = 0, cap = 0;
    int ok = 1;
    for (size_t k = 0; k < lx.ntoks && ok; k++) {
        const tk_t *t = &lx.toks[k];
        frame_t *top = depth ? &stack[depth - 1] : NULL;
        if (top && top->item_next && !tk_is_op(&lx, k, "}")) {
            cl_note_item(cl, &lx, k, top);
            top->item_next = 0;
        }
        buf_append(&b, src + copied, t->start - copied); /* spaces and comments as they were */
        copied = t->end;
        if (tk_is_op(&lx, k, "{")) {
            const tk_t *p = k ? &lx.toks[k - 1] : NULL;
            int call = p && (p->kind == TK_NAME || p->kind == TK_STRING || tk_is_op(&lx, k - 1, ")") ||
                             tk_is_op(&lx, k - 1, "]") || tk_is_op(&lx, k - 1, "}"));
            /* the "(" right after the function, not on the `{`'s line: LuaJIT
             * refuses a call whose "(" starts a new line */
            if (call) buf_insert(&b, prev_end, "(");
            if (depth == cap) {
                cap = cap ? cap * 2 : 16;
                stack = xrealloc(stack, cap * sizeof *stack);
            }
            cl->ctor_line = xrealloc(cl->ctor_line, (cl->nctors + 1) * sizeof *cl->ctor_line);
            cl->ctor_line[cl->nctors++] = t->line;
            stack[depth++] = (frame_t){(int)cl->nctors, call, 0, 1, 0};
            buf_printf(&b, CONFIG_LINES_FN "(%zu,{", cl->nctors);
        } else if (tk_is_op(&lx, k, "}")) {
            if (!top)
                ok = 0; /* unbalanced: not Lua */
            else
                buf_append_str(&b, top->call ? "}))" : "})");
            depth -= ok;
        } else {
            buf_append(&b, src + t->start, t->end - t->start);
            if (top) {
                if (tk_is_op(&lx, k, "(") || tk_is_op(&lx, k, "[") ||
                    (t->kind == TK_KEYWORD && (tk_is(&lx, k, "function") || tk_is(&lx, k, "if") ||
                                               tk_is(&lx, k, "do") || tk_is(&lx, k, "repeat"))))
                    top->nest++;
                else if (tk_is_op(&lx, k, ")") || tk_is_op(&lx, k, "]") ||
                         (t->kind == TK_KEYWORD && (tk_is(&lx, k, "end") || tk_is(&lx, k, "until"))))
                    top->nest--;
                else if (top->nest == 0 && (tk_is_op(&lx, k, ",") || tk_is_op(&lx, k, ";")))
                    top->item_next = 1;
            }
        }
        prev_end = b.len;
    }
    buf_append(&b, src + copied, len - copied);
    free(stack);
    free(lx.toks);
    if (!ok || depth) {
        buf_free(&b);
        config_lines_free(cl);
        return NULL;
    }
    *outlen = b.len;
    *out = buf_detach(&b);
    return cl;
}

void config_lines_free(config_lines_t *cl)
{
    if (!cl) return;
    for (size_t i = 0; i < cl->nfields; i++)
        free(cl->fields[i].key);
    free(cl->fields);
    free(cl->ctor_line);
    free(cl);
}

/* ---- lookups -------------------------------------------------------------------- */

static int cl_table_line(const config_lines_t *cl, int ctor)
{
    return ctor >= 1 && (size_t)ctor <= cl->nctors ? cl->ctor_line[ctor - 1] : 0;
}

static int cl_field_line(const config_lines_t *cl, int ctor, const char *key)
{
    int line = 0;
    for (size_t i = 0; key && i < cl->nfields; i++)
        if (cl->fields[i].ctor == ctor && cl->fields[i].key && !strcmp(cl->fields[i].key, key))
            line = cl->fields[i].line;
    return line;
}

static int cl_item_line(const config_lines_t *cl, int ctor, size_t index)
{
    for (size_t i = 0; i < cl->nfields; i++)
        if (cl->fields[i].ctor == ctor && !cl->fields[i].key && cl->fields[i].index == index) return cl->fields[i].line;
    return 0;
}

/* The constructor number of the table at idx; 0 if no constructor of the
 * file built it. */
static int cl_ctor(const config_lines_t *cl, lua_State *L, int idx)
{
    if (cl->ctors_ref == LUA_NOREF || lua_type(L, idx) != LUA_TTABLE) return 0;
    lua_pushvalue(L, idx);
    lua_rawgeti(L, LUA_REGISTRYINDEX, cl->ctors_ref);
    lua_insert(L, -2);
    lua_rawget(L, -2);
    int n = (int)lua_tointeger(L, -1);
    lua_pop(L, 2);
    return n;
}

int config_lines_of(const config_lines_t *cl, lua_State *L, int idx, const char *key)
{
    if (!cl || idx == 0) return 0;
    if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, cl->config_ref);
    int top = lua_rawequal(L, -1, idx);
    lua_pop(L, 1);
    if (top) {
        if (!key) return 0;
        lua_rawgeti(L, LUA_REGISTRYINDEX, cl->globals_ref);
        lua_getfield(L, -1, key);
        int line = (int)lua_tointeger(L, -1);
        lua_pop(L, 2);
        return line;
    }
    int ctor = cl_ctor(cl, L, idx);
    int line = key ? cl_field_line(cl, ctor, key) : 0;
    return line ? line : cl_table_line(cl, ctor);
}

int config_lines_of_item(const config_lines_t *cl, lua_State *L, int idx, size_t i)
{
    if (!cl) return 0;
    if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
    lua_rawgeti(L, idx, (int)i);
    int line = cl_table_line(cl, cl_ctor(cl, L, -1));
    lua_pop(L, 1);
    return line ? line : cl_item_line(cl, cl_ctor(cl, L, idx), i);
}

/* ---- evaluation ------------------------------------------------------------------- */

/* Runs before the file and returns the environment it runs in, and the
 * tables the lookups read: every global the file assigns lands in `config`,
 * the line of its last assignment in `lines`; `record` is what the
 * rewritten file calls at each constructor: table -> number in `ctors`. */
static const char cl_env_lua[] =
    "local config, lines, ctors = {}, {}, {}\n"
    "local G, getinfo = _G, debug.getinfo\n"
    "local env = setmetatable({}, {\n"
    "  __index = function(_, k) local v = config[k]; if v == nil then v = G[k] end; return v end,\n"
    "  __newindex = function(_, k, v) config[k] = v; local i = getinfo(2, 'l'); lines[k] = i and i.currentline end,\n"
    "})\n"
    "local function record(n, t) ctors[t] = n; return t end\n"
    "return env, config, lines, ctors, record\n";

config_lines_t *config_lines_eval(lua_State *L, const char *file, const char *src, size_t len, errbuf_t *err)
{
    int base = lua_gettop(L);
    char chunkname[PATH_MAX + 2];
    snprintf(chunkname, sizeof chunkname, "@%s", file);
    /* the file as written first: a syntax error is reported as Lua words it */
    if (luaL_loadbuffer(L, src, len, chunkname) != 0) {
        errbuf_set(err, "%s", lua_tostring(L, -1));
        lua_settop(L, base);
        return NULL;
    }
    if (luaL_loadbuffer(L, cl_env_lua, sizeof cl_env_lua - 1, "=shardrun config env") != 0 ||
        lua_pcall(L, 0, 5, 0) != 0) {
        errbuf_set(err, "%s: internal error: %s", file, lua_tostring(L, -1));
        lua_settop(L, base);
        return NULL;
    }
    int chunk = base + 1, env = base + 2, config = base + 3, lines = base + 4, ctors = base + 5, record = base + 6;
    char *rewritten = NULL;
    size_t rlen = 0;
    config_lines_t *cl = config_lines_scan(src, len, &rewritten, &rlen);
    int nargs = 0;
    if (cl && luaL_loadbuffer(L, rewritten, rlen, chunkname) == 0) {
        lua_pushvalue(L, record);
        nargs = 1;
    } else {
        /* the scan missed something Lua accepts: no table lines, same config */
        if (cl) lua_pop(L, 1);
        config_lines_free(cl);
        cl = xcalloc(1, sizeof *cl); /* owned by the caller: config_lines_free */
        cl->ctors_ref = LUA_NOREF;
        lua_pushvalue(L, chunk);
    }
    free(rewritten);
    lua_pushvalue(L, env);
    lua_setfenv(L, nargs ? -3 : -2);
    if (lua_pcall(L, nargs, 0, 0) != 0) {
        errbuf_set(err, "%s", lua_tostring(L, -1));
        config_lines_free(cl);
        lua_settop(L, base);
        return NULL;
    }
    lua_pushvalue(L, config);
    cl->config_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, lines);
    cl->globals_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (nargs) {
        lua_pushvalue(L, ctors);
        cl->ctors_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pushvalue(L, config);
    lua_replace(L, base + 1);
    lua_settop(L, base + 1);
    return cl;
}
