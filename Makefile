# shardrun: a C runtime that runs Lua record processors over sharded streams.
#
#   make          build ./shardrun
#   make demo     install deps, build, run the word-count demo on the local stream
#   make test     install deps, build, run every test (unit, spec, integration)
#   make asan-test  the same suite under AddressSanitizer + UBSan
#   make bench    the benchmark table (BENCH_QUICK=1 for a smaller run)

BUILD    ?= build
SAN      ?=
CC       ?= cc
PKGS     := libcurl libcjson openssl sqlite3 libsystemd zlib libmicrohttpd

# LuaJIT: the project's own build (with LUAJIT_ENABLE_CHECKHOOK, see
# scripts/build-luajit.sh) when present, else the system's.
LUAJIT_PREFIX := $(CURDIR)/.deps/luajit
ifneq ($(wildcard $(LUAJIT_PREFIX)/lib/libluajit-5.1.a),)
LUAJIT_CFLAGS := -I$(LUAJIT_PREFIX)/include/luajit-2.1
LUAJIT_LIBS   := $(LUAJIT_PREFIX)/lib/libluajit-5.1.a -Wl,-E -ldl
else
LUAJIT_CFLAGS := $(shell pkg-config --cflags luajit 2>/dev/null)
LUAJIT_LIBS   := $(shell pkg-config --libs luajit 2>/dev/null)
endif

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CFLAGS   ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -Iruntime \
              $(LUAJIT_CFLAGS) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS     := $(LUAJIT_LIBS) $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lev -lpthread -lm

ifeq ($(SAN),1)
ALL_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDSAN      := -fsanitize=address,undefined
endif

# The test build: the same sources with the fault hooks compiled in
# (runtime/worker/faults.h); `make faults` builds it as $(BUILD)-faults/shardrun.
ifeq ($(FAULTS),1)
ALL_CFLAGS += -DSHARDRUN_FAULTS
endif
FAULTS_BIN := $(BUILD)-faults/shardrun

VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
ALL_CFLAGS += -DSHARDRUN_VERSION='"$(VERSION)"'

LIB_SRC  := $(filter-out runtime/cli/main.c,$(wildcard runtime/*/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BIN      := $(if $(filter build,$(BUILD)),shardrun,$(BUILD)/shardrun)

export AWS_EC2_METADATA_DISABLED := true
# Test logs beside the build they test: `make asan-test` (BUILD=build-asan) keeps
# its own, and never writes over the normal run's. Not exported: a sub-make
# with another BUILD computes its own.
TEST_LOGS ?= $(CURDIR)/$(BUILD)/test-logs
RUN_TESTS := TEST_LOG_DIR=$(TEST_LOGS) SIM=$(CURDIR)/$(BUILD)/tests/sim scripts/run-tests.sh

.PHONY: all deps demo test test-only unit sim spec integration asan-test bench bench-local faults \
        bench-leases bench-kinesis bench-reload bench-metrics bench-lease-plan format lint clean
all: $(BIN)

# V=1 shows the full commands.
Q := $(if $(V),,@)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libshardrun.a: $(LIB_OBJ)
	$(Q)ar rcs $@ $^

$(BIN): $(BUILD)/runtime/cli/main.o $(BUILD)/libshardrun.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDSAN) -o $@ $^ $(LIBS)

# tests/common: what unit tests and the simulation share (virtual time, the
# in-memory lease store).
$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libshardrun.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(ALL_CFLAGS) -Itests/common $(LDSAN) -MMD -MP -o $@ $< $(BUILD)/libshardrun.a $(LIBS) -lcmocka

# The deterministic simulation (tests/sim): the coordinator, the shards and
# their glue on simulated time, store, stream and processor, seed by seed.
SIM_SRC := $(wildcard tests/sim/*.c)
SIM_OBJ := $(SIM_SRC:tests/sim/%.c=$(BUILD)/sim/%.o)
SIM_BIN := $(BUILD)/tests/sim

$(BUILD)/sim/%.o: tests/sim/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) -Itests/common -Itests/sim -MMD -MP -c $< -o $@

$(SIM_BIN): $(SIM_OBJ) $(BUILD)/libshardrun.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(LDSAN) -o $@ $(SIM_OBJ) $(BUILD)/libshardrun.a $(LIBS)

# Benchmark programs (tests/bench): the floors, bare programs that read the
# same records as a benchmark row without the runtime (see scripts/bench.py),
# and bench_lease_plan, which drives the lease planner with the runtime's code.
BENCH_SRC := $(wildcard tests/bench/*.c)
BENCH_BIN := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)
BENCH_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

$(BUILD)/bench/bench_lease_plan: tests/bench/bench_lease_plan.c $(BUILD)/libshardrun.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  BENCH   $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(LDSAN) -MMD -MP -o $@ $< $(BUILD)/libshardrun.a $(LIBS)

$(BUILD)/bench/%: tests/bench/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  BENCH   $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(LDSAN) -MMD -MP -o $@ $< $(BENCH_LIBS)

-include $(LIB_OBJ:.o=.d) $(BUILD)/runtime/cli/main.d $(UNIT_BIN:=.d) $(BENCH_BIN:=.d) $(SIM_OBJ:.o=.d)

deps:
	@scripts/install-deps.sh

# Unit tests: one cmocka binary per pure module.
unit: $(UNIT_BIN)
	@$(RUN_TESTS) unit $(UNIT_BIN)

# The deterministic simulation: SIM_SEEDS=N for more seeds, SIM_SEED=S for one.
sim: $(SIM_BIN)
	@$(RUN_TESTS) sim

spec: $(BIN)
	@$(RUN_TESTS) spec

faults:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)-faults FAULTS=1 $(FAULTS_BIN)

integration: $(BIN) faults
	@SHARDRUN=$(CURDIR)/$(BIN) SHARDRUN_FAULTS=$(CURDIR)/$(FAULTS_BIN) $(RUN_TESTS) integration

# The benchmark programs are built too (not run): a benchmark that no longer
# builds is found by make test, not by the next make bench.
test-only: $(BIN) $(UNIT_BIN) $(SIM_BIN) $(BENCH_BIN) faults
	@SHARDRUN=$(CURDIR)/$(BIN) SHARDRUN_FAULTS=$(CURDIR)/$(FAULTS_BIN) $(RUN_TESTS) all $(UNIT_BIN)

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory test-only

asan-test: deps
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=1 CFLAGS="-O1 -g" test-only

demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh

# One table; BENCH_QUICK=1 for a smaller run. Each part alone: bench-local,
# bench-kinesis, bench-leases, bench-reload, bench-metrics.
BENCH_RUN := SHARDRUN=$(CURDIR)/$(BIN) BENCH_FLOOR_DIR=$(CURDIR)/$(BUILD)/bench /usr/bin/python3 scripts/bench.py

bench-local bench-kinesis bench-leases bench-reload bench-metrics: all $(BENCH_BIN)
	@$(BENCH_RUN) $(@:bench-%=%)

# The lease planner and one taker run with 10,000 leases in one table.
bench-lease-plan: $(BUILD)/bench/bench_lease_plan
	@$(BUILD)/bench/bench_lease_plan 10000 10

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BIN)
	@$(BENCH_RUN) all

format:
	clang-format -i runtime/*/*.[ch] tests/unit/*.c

lint:
	/usr/bin/python3 scripts/check-layers.py
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --std=c11 \
	    --suppress=missingIncludeSystem -Iruntime runtime

clean:
	rm -rf build build-asan build-faults build-asan-faults shardrun

# Coverage-guided fuzzing of the parsers that read outside input (libFuzzer).
FUZZ_TIME ?= 30
FUZZ_CC   ?= clang
FUZZ_FLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Iruntime \
              $(shell pkg-config --cflags libcjson 2>/dev/null)
FUZZ_KPL_SRC := tests/fuzz/fuzz_kpl.c runtime/record/kpl.c runtime/base/buf.c runtime/base/log.c runtime/base/xalloc.c
FUZZ_AWS_SRC := tests/fuzz/fuzz_aws_json.c runtime/source/kinesis_json.c runtime/lease/lease_ddb.c \
                runtime/aws/awsjson.c runtime/aws/jscan.c runtime/base/base64.c \
                runtime/record/batch.c runtime/record/kpl.c runtime/lease/lease.c runtime/record/seqnum.c \
                runtime/source/source.c runtime/base/buf.c runtime/base/errbuf.c runtime/base/log.c runtime/base/xalloc.c
FUZZ_ES_SRC  := tests/fuzz/fuzz_eventstream.c runtime/aws/eventstream.c runtime/base/buf.c runtime/base/xalloc.c \
                runtime/base/log.c

$(BUILD)/fuzz/fuzz_kpl: $(FUZZ_KPL_SRC) $(wildcard runtime/*/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(FUZZ_KPL_SRC) -lcrypto -lpthread -o $@

$(BUILD)/fuzz/fuzz_aws_json: $(FUZZ_AWS_SRC) $(wildcard runtime/*/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(FUZZ_AWS_SRC) -lcjson -lcrypto -lpthread -o $@

$(BUILD)/fuzz/fuzz_eventstream: $(FUZZ_ES_SRC) $(wildcard runtime/*/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(FUZZ_ES_SRC) -lz -lpthread -o $@

.PHONY: fuzz
fuzz: $(BUILD)/fuzz/fuzz_kpl $(BUILD)/fuzz/fuzz_aws_json $(BUILD)/fuzz/fuzz_eventstream
	@mkdir -p $(BUILD)/fuzz/kpl-corpus $(BUILD)/fuzz/aws-corpus $(BUILD)/fuzz/eventstream-corpus
	$(BUILD)/fuzz/fuzz_kpl -max_total_time=$(FUZZ_TIME) -dict=tests/fuzz/fuzz_kpl.dict $(BUILD)/fuzz/kpl-corpus
	$(BUILD)/fuzz/fuzz_aws_json -max_total_time=$(FUZZ_TIME) -dict=tests/fuzz/fuzz_aws_json.dict $(BUILD)/fuzz/aws-corpus
	$(BUILD)/fuzz/fuzz_eventstream -max_total_time=$(FUZZ_TIME) -dict=tests/fuzz/fuzz_eventstream.dict \
	    $(BUILD)/fuzz/eventstream-corpus tests/unit/data

# ---- install and the Debian package --------------------------------------------
# make install [PREFIX=/usr/local] [DESTDIR=...]: the binary; shardrun's Lua
# modules in share/shardrun/lua, where the binary finds them by itself (next
# to ../share/shardrun/lua, see proc_lua_dir); the examples; shardrun(1); the
# systemd unit shardrun@.service. make deb: the same, PREFIX=/usr, as a .deb
# built by dpkg-deb (scripts/build-deb.sh), in $(BUILD)/.
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
MANDIR  ?= $(DATADIR)/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
SUBST   := sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@DATADIR@|$(DATADIR)|g' -e 's|@VERSION@|$(VERSION)|g'
EXAMPLE_FILES := $(shell find examples -type f -not -path '*/data/*' 2>/dev/null)

.PHONY: install uninstall deb
install: $(BIN)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)/shardrun/lua/shardrun $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(UNITDIR)
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/shardrun
	install -m 0644 lua/shardrun/*.lua $(DESTDIR)$(DATADIR)/shardrun/lua/shardrun/
	for f in $(EXAMPLE_FILES); do install -D -m 0644 $$f $(DESTDIR)$(DATADIR)/shardrun/$$f || exit 1; done
	$(SUBST) man/shardrun.1 >$(DESTDIR)$(MANDIR)/man1/shardrun.1
	$(SUBST) dist/systemd/shardrun@.service.in >$(DESTDIR)$(UNITDIR)/shardrun@.service

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/shardrun $(DESTDIR)$(MANDIR)/man1/shardrun.1 $(DESTDIR)$(UNITDIR)/shardrun@.service
	rm -rf $(DESTDIR)$(DATADIR)/shardrun

deb: $(BIN)
	@rm -rf $(BUILD)/deb
	@$(MAKE) --no-print-directory install PREFIX=/usr DESTDIR=$(CURDIR)/$(BUILD)/deb/debian/shardrun >/dev/null
	@scripts/build-deb.sh $(BUILD)/deb $(VERSION) $(BUILD)
