/* aws_http against a scripted local server (127.0.0.1 only): retries, typed
 * errors, timeouts, resets, keep-alive, cancellation, the per-attempt
 * prepare hook (signing itself is aws_client's: test_client), and streams
 * (pieces as they arrive, pause and resume, the idle watchdog, no retry; the
 * HTTP/2 side is covered against kinesis-mock by the fan-out integration
 * tests). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aws_fixture.h"
#include "aws/http.h"
#include "base/log.h"

/* ---- fixture ----------------------------------------------------------------- */

static aws_fixture_t fx;
static aws_http_t *http;
static ts_response_t script[8]; /* request i gets script[min(i, nscript - 1)] */
static int nscript;

typedef struct result {
    int done, error, attempts;
    long status;
    char body[4096], type[128], msg[512], request_id[128];
} result_t;

static void scripted(ts_server_t *s, const ts_request_t *req, ts_response_t *resp)
{
    (void)req;
    int i = s->nreqs - 1 < nscript - 1 ? s->nreqs - 1 : nscript - 1;
    *resp = script[i];
}

static void say(int i, int status, const char *headers, const char *body)
{
    memset(&script[i], 0, sizeof script[i]);
    script[i].status = status;
    snprintf(script[i].headers, sizeof script[i].headers, "%s", headers ? headers : "");
    snprintf(script[i].body, sizeof script[i].body, "%s", body ? body : "");
    if (i + 1 > nscript) nscript = i + 1;
}

static void act(int i, ts_action_t a)
{
    memset(&script[i], 0, sizeof script[i]);
    script[i].action = a;
    if (i + 1 > nscript) nscript = i + 1;
}

static aws_http_t *new_client(size_t max_response)
{
    aws_http_options_t o = {.connect_timeout_ms = 2000, .max_retries = 3, .retry_base_ms = 10,
                            .retry_max_ms = 40, .max_response_bytes = max_response};
    return aws_http_new(fx.loop, &o);
}

static int setup(void **state)
{
    (void)state;
    nscript = 0;
    memset(script, 0, sizeof script);
    say(0, 200, NULL, "ok");
    nscript = 1;
    if (fx_start(&fx, "http", scripted, 1) != 0) return -1;
    http = new_client(0);
    return http ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    if (http) aws_http_free(http);
    http = NULL;
    return fx_stop(&fx);
}

static void on_done(void *ud, const aws_http_response_t *r)
{
    result_t *res = ud;
    res->done++;
    res->error = r->error;
    res->status = r->status;
    res->attempts = r->attempts;
    snprintf(res->body, sizeof res->body, "%.*s", (int)r->body_len, r->body);
    snprintf(res->type, sizeof res->type, "%s", r->aws_error_type ? r->aws_error_type : "");
    snprintf(res->msg, sizeof res->msg, "%s", r->message ? r->message : "");
    snprintf(res->request_id, sizeof res->request_id, "%s", r->request_id ? r->request_id : "");
}

static void send_simple(const char *path, int retry, long timeout_ms, result_t *res)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", fx.srv.base, path);
    aws_http_request_t q = {.method = "GET", .url = url, .timeout_ms = timeout_ms, .retry = retry};
    assert_non_null(aws_http_send(http, &q, on_done, res));
    assert_int_equal(res->done, 0); /* never called from inside aws_http_send */
    fx_run_until(fx.loop, &res->done, 10);
    assert_int_equal(res->done, 1);
}

/* ---- tests ----------------------------------------------------------------- */

static void test_post_delivers_body_headers_and_response(void **state)
{
    (void)state;
    say(0, 200, "x-amzn-RequestId: rid-1\r\n", "hello");
    char url[256];
    snprintf(url, sizeof url, "%s/path?q=1", fx.srv.base);
    const char *hdrs[] = {"X-Test: 1", NULL};
    aws_http_request_t q = {.method = "POST", .url = url, .headers = hdrs, .body = "abc", .body_len = 3};
    result_t res = {0};
    assert_non_null(aws_http_send(http, &q, on_done, &res));
    fx_run_until(fx.loop, &res.done, 10);
    assert_int_equal(res.error, AWS_HTTP_OK);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "hello");
    assert_string_equal(res.request_id, "rid-1");
    assert_int_equal(res.attempts, 1);
    char v[64];
    ts_lock(&fx.srv);
    assert_string_equal(fx.srv.reqs[0].method, "POST");
    assert_string_equal(fx.srv.reqs[0].target, "/path?q=1");
    assert_true(ts_header(&fx.srv.reqs[0], "X-Test", v, sizeof v));
    assert_string_equal(v, "1");
    assert_int_equal(fx.srv.reqs[0].body_len, 3);
    assert_memory_equal(fx.srv.reqs[0].body, "abc", 3);
    ts_unlock(&fx.srv);
}

static void test_500_then_200_is_retried(void **state)
{
    (void)state;
    say(0, 500, NULL, "oops");
    say(1, 200, NULL, "fine");
    result_t res = {0};
    send_simple("/", 1, 5000, &res);
    assert_int_equal(res.error, AWS_HTTP_OK);
    assert_string_equal(res.body, "fine");
    assert_int_equal(res.attempts, 2);
    assert_int_equal(ts_count(&fx.srv), 2);
}

static void test_500_without_retry_is_typed_ehttp(void **state)
{
    (void)state;
    say(0, 500, NULL, "{\"__type\":\"InternalFailure\",\"message\":\"boom\"}");
    say(1, 200, NULL, "fine");
    result_t res = {0};
    send_simple("/", 0, 5000, &res);
    assert_int_equal(res.error, AWS_HTTP_EHTTP);
    assert_int_equal(res.status, 500);
    assert_string_equal(res.type, "InternalFailure");
    assert_string_equal(res.msg, "boom");
    assert_int_equal(res.attempts, 1);
    assert_int_equal(ts_count(&fx.srv), 1);
}

static void test_throttling_json_then_success(void **state)
{
    (void)state;
    say(0, 400, NULL, "{\"__type\":\"com.amazonaws.kinesis.v20131202#ProvisionedThroughputExceededException\","
                      "\"message\":\"Rate exceeded for shard\"}");
    say(1, 200, NULL, "{}");
    result_t res = {0};
    send_simple("/", 1, 5000, &res);
    assert_int_equal(res.error, AWS_HTTP_OK);
    assert_int_equal(res.attempts, 2);
}

static void test_throttle_header_is_retried_until_exhausted(void **state)
{
    (void)state;
    say(0, 400, "x-amzn-ErrorType: ThrottlingException:http://internal.amazon.com/coral/\r\n",
        "{\"message\":\"slow down\"}");
    char url[256];
    snprintf(url, sizeof url, "%s/", fx.srv.base);
    aws_http_request_t q = {.method = "GET", .url = url, .retry = 1, .max_retries = 2};
    result_t res = {0};
    assert_non_null(aws_http_send(http, &q, on_done, &res));
    fx_run_until(fx.loop, &res.done, 10);
    assert_int_equal(res.error, AWS_HTTP_EHTTP);
    assert_int_equal(res.status, 400);
    assert_string_equal(res.type, "ThrottlingException");
    assert_string_equal(res.msg, "slow down");
    assert_int_equal(res.attempts, 3);
    assert_int_equal(ts_count(&fx.srv), 3);
    assert_non_null(strstr(fx_log(&fx), "event=aws_http_retry"));
}

static void test_validation_error_is_not_retried(void **state)
{
    (void)state;
    say(0, 400, NULL, "{\"__type\":\"ValidationException\",\"Message\":\"bad shard id\"}");
    say(1, 200, NULL, "{}");
    result_t res = {0};
    send_simple("/", 1, 5000, &res);
    assert_int_equal(res.error, AWS_HTTP_EHTTP);
    assert_string_equal(res.type, "ValidationException");
    assert_string_equal(res.msg, "bad shard id");
    assert_int_equal(res.attempts, 1);
}

static void test_xml_error_code_is_reported(void **state)
{
    (void)state;
    say(0, 403, NULL, "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
                      "<Message>Not authorized</Message></Error></ErrorResponse>");
    result_t res = {0};
    send_simple("/", 1, 5000, &res);
    assert_int_equal(res.error, AWS_HTTP_EHTTP);
    assert_string_equal(res.type, "AccessDenied");
    assert_string_equal(res.msg, "Not authorized");
    assert_int_equal(res.attempts, 1);
}

static void test_stalled_response_hits_the_timeout(void **state)
{
    (void)state;
    act(0, TS_STALL);
    result_t res = {0};
    double t0 = ev_time();
    send_simple("/", 0, 300, &res);
    double took = ev_time() - t0;
    assert_int_equal(res.error, AWS_HTTP_ETIMEOUT);
    assert_int_equal(res.attempts, 1);
    assert_true(took >= 0.25 && took < 5);
}

static void test_stalled_then_answered_is_retried(void **state)
{
    (void)state;
    act(0, TS_STALL);
    say(1, 200, NULL, "late but fine");
    result_t res = {0};
    send_simple("/", 1, 300, &res);
    assert_int_equal(res.error, AWS_HTTP_OK);
    assert_string_equal(res.body, "late but fine");
    assert_int_equal(res.attempts, 2);
}

static void test_reset_connection_then_success(void **state)
{
    (void)state;
    act(0, TS_RESET);
    say(1, 200, NULL, "after reset");
    result_t res = {0};
    send_simple("/", 1, 5000, &res);
    assert_int_equal(res.error, AWS_HTTP_OK);
    assert_string_equal(res.body, "after reset");
    assert_int_equal(res.attempts, 2);
}

static void test_reset_without_retry_is_econnect(void **state)
{
    (void)state;
    act(0, TS_RESET);
    result_t res = {0};
    send_simple("/", 0, 5000, &res);
    assert_int_equal(res.error, AWS_HTTP_ECONNECT);
    assert_int_equal(res.status, 0);
    assert_true(res.msg[0] != '\0');
}

static void test_refused_connection_is_econnect_after_retries(void **state)
{
    (void)state;
    /* a port that was just free: bind, note, close */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(sa.sin_port));
    aws_http_request_t q = {.method = "GET", .url = url, .retry = 1, .max_retries = 2};
    result_t res = {0};
    assert_non_null(aws_http_send(http, &q, on_done, &res));
    fx_run_until(fx.loop, &res.done, 10);
    assert_int_equal(res.error, AWS_HTTP_ECONNECT);
    assert_int_equal(res.attempts, 3);
}

static void test_tls_failure_is_etls(void **state)
{
    (void)state;
    fx.srv.greeting = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/", fx.srv.port);
    aws_http_request_t q = {.method = "GET", .url = url, .timeout_ms = 3000};
    result_t res = {0};
    assert_non_null(aws_http_send(http, &q, on_done, &res));
    fx_run_until(fx.loop, &res.done, 10);
    assert_int_equal(res.error, AWS_HTTP_ETLS);
}

static void test_free_cancels_in_flight_requests(void **state)
{
    (void)state;
    act(0, TS_STALL);
    char url[128];
    snprintf(url, sizeof url, "%s/", fx.srv.base);
    aws_http_request_t q = {.method = "GET", .url = url, .timeout_ms = 10000};
    result_t a = {0}, b = {0};
    assert_non_null(aws_http_send(http, &q, on_done, &a));
    snprintf(url, sizeof url, "%s/backoff", fx.srv.base);
    int seen = 0;
    double start = ev_time();
    while (!seen && ev_time() - start < 5) {
        fx_run_until(fx.loop, &a.done, 0.05);
        seen = ts_count(&fx.srv) >= 1;
    }
    assert_true(seen);
    assert_non_null(aws_http_send(http, &q, on_done, &b)); /* not yet started when freed */
    aws_http_free(http);
    http = NULL;
    assert_int_equal(a.done, 1);
    assert_int_equal(a.error, AWS_HTTP_ECANCELLED);
    assert_int_equal(b.done, 1);
    assert_int_equal(b.error, AWS_HTTP_ECANCELLED);
}

static void test_cancel_suppresses_the_callback(void **state)
{
    (void)state;
    act(0, TS_STALL);
    char url[128];
    snprintf(url, sizeof url, "%s/", fx.srv.base);
    aws_http_request_t q = {.method = "GET", .url = url, .timeout_ms = 200};
    result_t a = {0};
    aws_http_req_t *r = aws_http_send(http, &q, on_done, &a);
    assert_non_null(r);
    aws_http_cancel(http, r);
    int never = 0;
    fx_run_until(fx.loop, &never, 0.4);
    assert_int_equal(a.done, 0);
}

static void test_keep_alive_reuses_one_connection(void **state)
{
    (void)state;
    result_t a = {0}, b = {0};
    send_simple("/one", 0, 5000, &a);
    send_simple("/two", 0, 5000, &b);
    assert_int_equal(a.error, AWS_HTTP_OK);
    assert_int_equal(b.error, AWS_HTTP_OK);
    ts_lock(&fx.srv);
    assert_int_equal(fx.srv.nreqs, 2);
    assert_int_equal(fx.srv.nconns, 1);
    assert_int_equal(fx.srv.reqs[1].conn, 1);
    ts_unlock(&fx.srv);
}

static void test_response_above_limit_is_etoolarge(void **state)
{
    (void)state;
    aws_http_free(http);
    http = new_client(10);
    say(0, 200, NULL, "this body is longer than ten bytes");
    result_t res = {0};
    send_simple("/", 1, 5000, &res);
    assert_int_equal(res.error, AWS_HTTP_ETOOLARGE);
    assert_int_equal(res.attempts, 1);
}

static void test_invalid_arguments_are_rejected(void **state)
{
    (void)state;
    result_t res = {0};
    aws_http_request_t q = {.method = "GET", .url = "ftp://127.0.0.1/"};
    assert_null(aws_http_send(http, &q, on_done, &res));
    q.url = NULL;
    assert_null(aws_http_send(http, &q, on_done, &res));
    int never = 0;
    fx_run_until(fx.loop, &never, 0.05);
    assert_int_equal(res.done, 0);
}

static void test_backoff_is_jittered_exponential_and_capped(void **state)
{
    (void)state;
    aws_http_free(http);
    aws_http_options_t o = {.retry_base_ms = 100, .retry_max_ms = 1000};
    http = aws_http_new(fx.loop, &o);
    long lo[] = {0, 50, 100, 200, 400, 500, 500}, hi[] = {0, 100, 200, 400, 800, 1000, 1000};
    for (int retry = 1; retry <= 6; retry++) {
        long min = 1 << 30, max = 0;
        for (int i = 0; i < 300; i++) {
            long d = aws_http_backoff_ms(http, retry);
            if (d < min) min = d;
            if (d > max) max = d;
        }
        assert_true(min >= lo[retry] && max <= hi[retry]);
        assert_true(max > min); /* jittered, not constant */
    }
    assert_true(aws_http_backoff_ms(http, 60) <= 1000);
}

static void test_throttle_types(void **state)
{
    (void)state;
    assert_true(aws_http_is_throttle("ProvisionedThroughputExceededException"));
    assert_true(aws_http_is_throttle("LimitExceededException"));
    assert_true(aws_http_is_throttle("RequestLimitExceeded"));
    assert_true(aws_http_is_throttle("TooManyRequestsException"));
    assert_true(aws_http_is_throttle("ThrottlingException"));
    assert_false(aws_http_is_throttle("ValidationException"));
    assert_false(aws_http_is_throttle(NULL));
}

/* ---- the prepare hook: per-attempt headers, hold and resume -------------------- */

typedef struct prep {
    int calls, hold_first, fail_with;
    aws_http_req_t *held;
} prep_t;

static int prepare(void *ud, aws_http_req_t *r, const char **why)
{
    prep_t *p = ud;
    char line[64];
    p->calls++;
    if (p->fail_with) {
        *why = "no way to prepare";
        return p->fail_with;
    }
    if (p->hold_first && p->calls == 1) {
        p->held = r;
        return AWS_HTTP_HOLD;
    }
    snprintf(line, sizeof line, "X-Attempt: %d", p->calls);
    aws_http_attempt_header(r, line);
    return 0;
}

static aws_http_req_t *send_prepared(prep_t *p, result_t *res)
{
    char url[256];
    snprintf(url, sizeof url, "%s/p", fx.srv.base);
    static const char *const fixed[] = {"X-Fixed: yes", NULL};
    aws_http_request_t q = {.method = "POST", .url = url, .headers = fixed, .body = "b", .body_len = 1,
                            .retry = 1, .prepare = prepare, .prepare_ud = p};
    return aws_http_send(http, &q, on_done, res);
}

static void test_prepare_hook_runs_before_every_attempt_with_fresh_headers(void **state)
{
    (void)state;
    say(0, 503, NULL, "{}");
    say(1, 200, NULL, "done");
    prep_t p = {0};
    result_t res = {0};
    assert_non_null(send_prepared(&p, &res));
    fx_run_until(fx.loop, &res.done, 10);
    assert_int_equal(res.error, AWS_HTTP_OK);
    assert_int_equal(p.calls, 2);
    char v[64];
    ts_lock(&fx.srv);
    assert_int_equal(fx.srv.nreqs, 2);
    for (int i = 0; i < 2; i++) {
        char want[16];
        snprintf(want, sizeof want, "%d", i + 1);
        assert_true(ts_header(&fx.srv.reqs[i], "X-Attempt", v, sizeof v));
        assert_string_equal(v, want); /* the header of that attempt only, not both */
        assert_true(ts_header(&fx.srv.reqs[i], "X-Fixed", v, sizeof v));
    }
    ts_unlock(&fx.srv);
}

static void test_held_request_waits_then_resumes_or_fails(void **state)
{
    (void)state;
    prep_t p = {.hold_first = 1};
    result_t res = {0};
    assert_non_null(send_prepared(&p, &res));
    int never = 0;
    fx_run_until(fx.loop, &never, 0.2);
    assert_non_null(p.held);
    assert_int_equal(res.done, 0);
    assert_int_equal(ts_count(&fx.srv), 0); /* nothing sent while held */
    aws_http_resume(p.held, 0, NULL);
    fx_run_until(fx.loop, &res.done, 10);
    assert_int_equal(res.error, AWS_HTTP_OK);
    assert_int_equal(p.calls, 2); /* asked again on resume */

    prep_t q = {.hold_first = 1};
    result_t res2 = {0};
    assert_non_null(send_prepared(&q, &res2));
    fx_run_until(fx.loop, &never, 0.2);
    aws_http_resume(q.held, AWS_HTTP_ECREDENTIALS, "none to be had");
    assert_int_equal(res2.done, 1);
    assert_int_equal(res2.error, AWS_HTTP_ECREDENTIALS);
    assert_string_equal(res2.msg, "none to be had");
    assert_int_equal(ts_count(&fx.srv), 1);
}

static void test_prepare_failure_ends_the_request_unsent(void **state)
{
    (void)state;
    prep_t p = {.fail_with = AWS_HTTP_ECREDENTIALS};
    result_t res = {0};
    assert_non_null(send_prepared(&p, &res));
    fx_run_until(fx.loop, &res.done, 10);
    assert_int_equal(res.error, AWS_HTTP_ECREDENTIALS);
    assert_string_equal(res.msg, "no way to prepare");
    assert_int_equal(res.attempts, 0);
    assert_int_equal(ts_count(&fx.srv), 0);
}

static void test_free_cancels_a_held_request(void **state)
{
    (void)state;
    prep_t p = {.hold_first = 1};
    result_t res = {0};
    assert_non_null(send_prepared(&p, &res));
    int never = 0;
    fx_run_until(fx.loop, &never, 0.1);
    assert_non_null(p.held);
    aws_http_free(http);
    http = NULL;
    assert_int_equal(res.done, 1);
    assert_int_equal(res.error, AWS_HTTP_ECANCELLED);
}

/* ---- streams ------------------------------------------------------------------ */

typedef struct stream_result {
    result_t end;
    char got[16384];
    size_t len;
    int pieces;
    int pause_after;          /* pause once this many pieces were handed over */
    int cancel_in_callback;   /* cancel the request from inside on_data */
    aws_http_req_t *req;
    double last_piece_s;
} stream_result_t;

static void on_piece(void *ud, const char *p, size_t n)
{
    stream_result_t *sr = ud;
    assert_true(sr->len + n < sizeof sr->got);
    memcpy(sr->got + sr->len, p, n);
    sr->len += n;
    sr->got[sr->len] = '\0';
    sr->pieces++;
    sr->last_piece_s = ev_time();
    if (sr->cancel_in_callback) {
        aws_http_cancel(http, sr->req);
        sr->end.done = -1; /* no done callback may follow */
        return;
    }
    if (sr->pause_after && sr->pieces == sr->pause_after) aws_http_pause(sr->req, 1);
}

static void stream_script(int i, int status, const char *body, int pieces, int ms, int stall)
{
    memset(&script[i], 0, sizeof script[i]);
    script[i].action = TS_STREAM;
    script[i].status = status;
    snprintf(script[i].body, sizeof script[i].body, "%s", body);
    script[i].stream_pieces = pieces;
    script[i].stream_ms = ms;
    script[i].stream_stall = stall;
    if (i + 1 > nscript) nscript = i + 1;
}

static aws_http_req_t *open_stream(stream_result_t *sr, long idle_ms)
{
    char url[256];
    snprintf(url, sizeof url, "%s/stream", fx.srv.base);
    aws_http_request_t q = {.method = "POST", .url = url, .body = "{}", .body_len = 2, .on_data = on_piece,
                            .data_ud = sr, .idle_timeout_ms = idle_ms, .timeout_ms = 100 /* ignored */};
    sr->req = aws_http_send(http, &q, on_done, &sr->end);
    return sr->req;
}

static void test_stream_hands_over_pieces_as_they_arrive(void **state)
{
    (void)state;
    stream_script(0, 200, "0123456789abcdefghij", 4, 150, 0);
    stream_result_t sr = {0};
    assert_non_null(open_stream(&sr, 0));
    double start = ev_time();
    fx_run_until(fx.loop, &sr.pieces, 10);
    assert_true(ev_time() - start < 0.4); /* before the whole body (450 ms) was sent */
    assert_int_equal(sr.end.done, 0);
    fx_run_until(fx.loop, &sr.end.done, 10);
    assert_int_equal(sr.end.done, 1);
    assert_int_equal(sr.end.error, AWS_HTTP_OK);
    assert_int_equal(sr.end.status, 200);
    assert_string_equal(sr.got, "0123456789abcdefghij");
    assert_true(sr.pieces >= 2);
    assert_string_equal(sr.end.body, ""); /* nothing collected: it was handed over */
    /* the whole stream outlived timeout_ms: a stream has no whole-request timeout */
}

static void test_stream_error_status_is_collected_not_handed_over(void **state)
{
    (void)state;
    say(0, 400, "x-amzn-ErrorType: ResourceNotFoundException:http://internal\r\n",
        "{\"message\":\"Consumer not found\"}");
    stream_result_t sr = {0};
    assert_non_null(open_stream(&sr, 0));
    fx_run_until(fx.loop, &sr.end.done, 10);
    assert_int_equal(sr.end.error, AWS_HTTP_EHTTP);
    assert_int_equal(sr.end.status, 400);
    assert_string_equal(sr.end.type, "ResourceNotFoundException");
    assert_string_equal(sr.end.msg, "Consumer not found");
    assert_int_equal(sr.pieces, 0);
}

static void test_stream_is_never_retried(void **state)
{
    (void)state;
    say(0, 503, NULL, "{}");
    say(1, 200, NULL, "ok");
    stream_result_t sr = {0};
    assert_non_null(open_stream(&sr, 0));
    fx_run_until(fx.loop, &sr.end.done, 10);
    assert_int_equal(sr.end.error, AWS_HTTP_EHTTP);
    assert_int_equal(sr.end.attempts, 1);
    assert_int_equal(ts_count(&fx.srv), 1);
    /* asking for retries on a stream is refused */
    char url[256];
    snprintf(url, sizeof url, "%s/stream", fx.srv.base);
    aws_http_request_t q = {.method = "POST", .url = url, .on_data = on_piece, .data_ud = &sr, .retry = 1};
    assert_null(aws_http_send(http, &q, on_done, &sr.end));
}

static void test_stream_idle_watchdog_ends_a_silent_stream(void **state)
{
    (void)state;
    stream_script(0, 200, "hello", 1, 0, 1);
    stream_result_t sr = {0};
    assert_non_null(open_stream(&sr, 300));
    double start = ev_time();
    fx_run_until(fx.loop, &sr.end.done, 10);
    double took = ev_time() - start;
    assert_int_equal(sr.end.error, AWS_HTTP_ETIMEOUT);
    assert_string_equal(sr.got, "hello"); /* what came before is handed over */
    assert_non_null(strstr(sr.end.msg, "nothing for 300 ms"));
    assert_true(took >= 0.25 && took < 3.0);
}

static void test_stream_paused_receives_nothing_until_resumed(void **state)
{
    (void)state;
    stream_script(0, 200, "AAAABBBBCCCCDDDD", 4, 100, 0);
    stream_result_t sr = {.pause_after = 1};
    assert_non_null(open_stream(&sr, 200)); /* the watchdog must not fire while paused */
    fx_run_until(fx.loop, &sr.pieces, 10);
    assert_int_equal(sr.pieces, 1);
    int never = 0;
    fx_run_until(fx.loop, &never, 0.8); /* the server sent the rest meanwhile */
    assert_int_equal(sr.pieces, 1);
    assert_int_equal(sr.end.done, 0);
    assert_string_equal(sr.got, "AAAA");
    double resumed = ev_time();
    aws_http_pause(sr.req, 0);
    assert_int_equal(sr.pieces, 1); /* handed over on a later loop turn, not inside the call */
    fx_run_until(fx.loop, &sr.end.done, 10);
    assert_int_equal(sr.end.error, AWS_HTTP_OK);
    assert_string_equal(sr.got, "AAAABBBBCCCCDDDD");
    assert_true(sr.last_piece_s - resumed < 0.5); /* what was held back came at once */
}

static void test_stream_paused_then_silent_times_out_after_resume(void **state)
{
    (void)state;
    stream_script(0, 200, "only", 1, 0, 1);
    stream_result_t sr = {.pause_after = 1};
    assert_non_null(open_stream(&sr, 200));
    int never = 0;
    fx_run_until(fx.loop, &never, 0.6);
    assert_int_equal(sr.end.done, 0); /* paused: the watchdog sleeps */
    aws_http_pause(sr.req, 0);
    fx_run_until(fx.loop, &sr.end.done, 5);
    assert_int_equal(sr.end.error, AWS_HTTP_ETIMEOUT);
}

static void test_stream_cancelled_from_its_callback(void **state)
{
    (void)state;
    stream_script(0, 200, "abcdef", 3, 50, 0);
    stream_result_t sr = {.cancel_in_callback = 1};
    assert_non_null(open_stream(&sr, 0));
    fx_run_until(fx.loop, &sr.pieces, 10);
    int never = 0;
    fx_run_until(fx.loop, &never, 0.3);
    assert_int_equal(sr.pieces, 1);
    assert_int_equal(sr.end.done, -1); /* on_done never ran */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_post_delivers_body_headers_and_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_500_then_200_is_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_500_without_retry_is_typed_ehttp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_throttling_json_then_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_throttle_header_is_retried_until_exhausted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation_error_is_not_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_xml_error_code_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_response_hits_the_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_then_answered_is_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_connection_then_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_without_retry_is_econnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_connection_is_econnect_after_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_failure_is_etls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_cancels_in_flight_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_suppresses_the_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_alive_reuses_one_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_above_limit_is_etoolarge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_arguments_are_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backoff_is_jittered_exponential_and_capped, setup, teardown),
        cmocka_unit_test(test_throttle_types),
        cmocka_unit_test_setup_teardown(test_prepare_hook_runs_before_every_attempt_with_fresh_headers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_held_request_waits_then_resumes_or_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prepare_failure_ends_the_request_unsent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_cancels_a_held_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_hands_over_pieces_as_they_arrive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_error_status_is_collected_not_handed_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_is_never_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_idle_watchdog_ends_a_silent_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_paused_receives_nothing_until_resumed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_paused_then_silent_times_out_after_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_cancelled_from_its_callback, setup, teardown),
    };
    /* no test may reach a real metadata service or a proxy */
    fx_clear_aws_env();
    return cmocka_run_group_tests_name("aws_http", tests, NULL, NULL);
}
