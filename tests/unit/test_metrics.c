/* metrics: the registry and its text exposition. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/metrics.h"

static const char *const stream_shard[] = {"stream", "shard", NULL};
static const char *const stream_only[] = {"stream", NULL};

static char *render(metrics_t *m)
{
    buf_t b = BUF_INIT;
    metrics_render(m, &b);
    return buf_detach(&b); /* freed by the caller */
}

static void test_counters_render_with_help_type_and_labels(void **state)
{
    metrics_t *m = metrics_new();
    metric_family_t *f = metrics_family(m, METRIC_COUNTER, "shardrun_records_processed_total", "Records processed.",
                                        stream_shard, NULL, 0);
    metric_t *a = metrics_series(f, "words", "shardId-000000000000", NULL);
    metric_t *b = metrics_series(f, "words", "shardId-000000000001", NULL);
    metric_add(a, 3);
    metric_add(a, 4);
    metric_add(b, 1e6);
    char *text = render(m);
    assert_string_equal(text, "# HELP shardrun_records_processed_total Records processed.\n"
                              "# TYPE shardrun_records_processed_total counter\n"
                              "shardrun_records_processed_total{stream=\"words\",shard=\"shardId-000000000000\"} 7\n"
                              "shardrun_records_processed_total{stream=\"words\",shard=\"shardId-000000000001\"} "
                              "1000000\n");
    free(text);
    metrics_free(m);
}

static void test_the_same_labels_give_the_same_series_until_the_last_holder_lets_go(void **state)
{
    metrics_t *m = metrics_new();
    metric_family_t *f = metrics_family(m, METRIC_GAUGE, "shardrun_x", "X.", stream_only, NULL, 0);
    /* declaring a family again returns it */
    assert_ptr_equal(metrics_family(m, METRIC_GAUGE, "shardrun_x", "X.", stream_only, NULL, 0), f);
    metric_t *a = metrics_series(f, "s", NULL, NULL);
    metric_t *again = metrics_series(f, "s", NULL, NULL);
    assert_ptr_equal(a, again);
    metric_set(a, 5);
    assert_int_equal(metrics_series_count(m), 1);
    metric_put(again);
    assert_int_equal(metrics_series_count(m), 1); /* one holder left */
    metric_put(a);
    assert_int_equal(metrics_series_count(m), 0);
    char *text = render(m);
    assert_null(strstr(text, "shardrun_x{")); /* gone with its last holder; HELP and TYPE stay */
    assert_non_null(strstr(text, "# TYPE shardrun_x gauge\n"));
    free(text);
    metrics_free(m);
}

static void test_histograms_are_cumulative_with_sum_count_and_inf(void **state)
{
    static const double bounds[] = {0.005, 0.1, 1};
    metrics_t *m = metrics_new();
    metric_family_t *f =
        metrics_family(m, METRIC_HISTOGRAM, "shardrun_batch_duration_seconds", "Batch time.", stream_only, bounds, 3);
    metric_t *h = metrics_series(f, "words", NULL, NULL);
    metric_observe(h, 0.001);
    metric_observe(h, 0.005); /* on a bound: counted in it (le is "less or equal") */
    metric_observe(h, 0.5);
    metric_observe(h, 7);
    char *text = render(m);
    assert_non_null(strstr(text, "shardrun_batch_duration_seconds_bucket{stream=\"words\",le=\"0.005\"} 2\n"
                                 "shardrun_batch_duration_seconds_bucket{stream=\"words\",le=\"0.1\"} 2\n"
                                 "shardrun_batch_duration_seconds_bucket{stream=\"words\",le=\"1\"} 3\n"
                                 "shardrun_batch_duration_seconds_bucket{stream=\"words\",le=\"+Inf\"} 4\n"
                                 "shardrun_batch_duration_seconds_sum{stream=\"words\"} 7.506\n"
                                 "shardrun_batch_duration_seconds_count{stream=\"words\"} 4\n"));
    assert_int_equal(metrics_series_count(m), 3 + 3); /* 4 buckets, _sum, _count */
    free(text);
    metrics_free(m);
}

static void test_label_values_are_escaped(void **state)
{
    metrics_t *m = metrics_new();
    metric_family_t *f = metrics_family(m, METRIC_GAUGE, "shardrun_y", "Y.", stream_only, NULL, 0);
    metric_set(metrics_series(f, "a\"b\\c\nd", NULL, NULL), 1);
    char *text = render(m);
    assert_non_null(strstr(text, "shardrun_y{stream=\"a\\\"b\\\\c\\nd\"} 1\n"));
    free(text);
    metrics_free(m);
}

static void test_values_are_formatted_as_prometheus_reads_them(void **state)
{
    static const double in[] = {0, -3, 0.25, 1.0 / 3, 1e20, 9007199254740993.0};
    static const char *const want[] = {"0", "-3", "0.25", "0.33333333333333331", "1e+20", "9007199254740992"};
    for (size_t i = 0; i < sizeof in / sizeof *in; i++) {
        buf_t b = BUF_INIT;
        metrics_format_value(&b, in[i]);
        assert_string_equal(buf_str(&b), want[i]);
        buf_free(&b);
    }
    buf_t b = BUF_INIT;
    metrics_format_value(&b, 1.0 / 0.0);
    buf_append_char(&b, ' ');
    metrics_format_value(&b, -1.0 / 0.0);
    assert_string_equal(buf_str(&b), "+Inf -Inf");
    buf_free(&b);
}

static void test_counted_observations_add_per_bucket_with_their_sum(void **state)
{
    static const double bounds[] = {1, 2};
    metrics_t *m = metrics_new();
    metric_t *h = metrics_series(metrics_family(m, METRIC_HISTOGRAM, "shardrun_c_seconds", "C.", NULL, bounds, 2), NULL,
                                 NULL, NULL);
    metric_observe(h, 1.5);
    const uint64_t counts[] = {3, 0, 2};
    metric_observe_counted(h, counts, 3, 12.5);
    assert_int_equal(h->buckets[0], 3);
    assert_int_equal(h->buckets[1], 1);
    assert_int_equal(h->buckets[2], 2);
    assert_int_equal(h->count, 6);
    assert_true(h->sum == 14);
    metrics_free(m);
}

static void test_kept_families_keep_series_after_the_last_holder(void **state)
{
    metrics_t *m = metrics_new();
    metric_family_t *f = metrics_family(m, METRIC_COUNTER, "shardrun_trips_total", "T.", stream_only, NULL, 0);
    metrics_family_keep(f);
    metric_t *s = metrics_series(f, "words", NULL, NULL);
    metric_add(s, 2);
    metric_put(s);
    assert_int_equal(metrics_series_count(m), 1);
    metric_t *again = metrics_series(f, "words", NULL, NULL);
    assert_ptr_equal(again, s);
    assert_true(again->value == 2); /* a counter goes on where it was */
    metric_put(again);
    metrics_free(m);
}

typedef struct held {
    metric_t *g;
    int calls;
} held_t;

static void collect(void *ud)
{
    held_t *h = ud;
    metric_set(h->g, 42 + h->calls++);
}

static void test_collectors_set_pulled_gauges_before_each_render(void **state)
{
    metrics_t *m = metrics_new();
    metric_family_t *f = metrics_family(m, METRIC_GAUGE, "shardrun_prefetched_bytes", "Bytes.", NULL, NULL, 0);
    held_t h = {metrics_series(f, NULL, NULL, NULL), 0};
    metrics_on_render(m, collect, &h);
    char *text = render(m);
    assert_non_null(strstr(text, "\nshardrun_prefetched_bytes 42\n"));
    free(text);
    metrics_off_render(m, collect, &h);
    text = render(m);
    assert_non_null(strstr(text, "\nshardrun_prefetched_bytes 42\n")); /* not called again */
    assert_int_equal(h.calls, 1);
    free(text);
    metrics_free(m);
}

static void test_everything_accepts_null_when_metrics_are_off(void **state)
{
    metric_family_t *f = metrics_family(NULL, METRIC_COUNTER, "shardrun_z_total", "Z.", NULL, NULL, 0);
    assert_null(f);
    metric_t *s = metrics_series(f, NULL, NULL, NULL);
    assert_null(s);
    metric_add(s, 1);
    metric_set(s, 1);
    metric_observe(s, 1);
    metric_put(s);
    metrics_on_render(NULL, collect, NULL);
    buf_t b = BUF_INIT;
    metrics_render(NULL, &b);
    assert_int_equal(b.len, 0);
    assert_int_equal(metrics_series_count(NULL), 0);
    metrics_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_render_with_help_type_and_labels),
        cmocka_unit_test(test_the_same_labels_give_the_same_series_until_the_last_holder_lets_go),
        cmocka_unit_test(test_histograms_are_cumulative_with_sum_count_and_inf),
        cmocka_unit_test(test_label_values_are_escaped),
        cmocka_unit_test(test_values_are_formatted_as_prometheus_reads_them),
        cmocka_unit_test(test_counted_observations_add_per_bucket_with_their_sum),
        cmocka_unit_test(test_kept_families_keep_series_after_the_last_holder),
        cmocka_unit_test(test_collectors_set_pulled_gauges_before_each_render),
        cmocka_unit_test(test_everything_accepts_null_when_metrics_are_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
