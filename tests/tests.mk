# C unit tests of the pure codecs and libFuzzer targets for every parser.
# Included by the top-level Makefile; uses its WARN, CODEC_SRC and BUILD.
#
#   make unit                 build and run tests/unit/test_*.c (ASan+UBSan always on)
#   make unit UNIT=test_utf8  only that binary (extra args: UNIT_ARGS=test_name ...)
#   make fuzz                 build the fuzzers with clang, run each FUZZ_SECONDS
#   make fuzz-build           only build them (build/fuzz/fuzz_*)
#
#   make tsan                 the threaded unit tests under ThreadSanitizer, and
#                             the multi-worker specs against the server built
#                             with it (build/tsan/moonws)
#
# Unit tests compile the codecs (and the thread-safe util/transport pieces
# they test) again with the sanitizers into build/unit/obj, so they never
# mix with the objects of `make all`. The objects go into one archive: each
# test binary links only the ones it uses (only test_metrics_http pulls the
# transport in: conn.c, worker.c, listener.c on a real loop).

.PHONY: unit fuzz fuzz-build tsan

UNIT_DIR    := $(BUILD)/unit
UNIT_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
               -fno-omit-frame-pointer
UNIT_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -MMD -MP $(WARN) $(UNIT_SAN) -Isrc
UNIT_LIBS   := -lev -lhiredis -lssl -lcrypto -lz -lpthread
UNIT_SRC    := $(sort $(wildcard tests/unit/test_*.c))
UNIT_ALL    := $(UNIT_SRC:tests/unit/%.c=%)
UNIT        ?= $(UNIT_ALL)
UNIT_BIN    := $(addprefix $(UNIT_DIR)/,$(UNIT))
UNIT_LIBSRC := $(CODEC_SRC) src/util/siphash.c src/util/shdict.c src/util/xshbuf.c \
               src/util/connid.c src/util/pathcount.c \
               src/util/metrics.c src/util/shbuf.c src/util/traffic_log.c src/util/twheel.c \
               src/transport/inbox.c src/transport/conn.c src/transport/worker.c \
               src/transport/listener.c src/transport/admission.c \
               src/proto/metrics_http.c $(wildcard src/cluster/*.c)

# The rules of one build of the unit tests: $(1) its folder, $(2) the
# compiler flags, $(3) the sanitizer flags to link with.
define unit_build
$(1)/obj/%.o: src/%.c
	@mkdir -p $$(dir $$@)
	$$(say) CC $$<
	$$(Q)$$(CC) $(2) -c -o $$@ $$<

$(1)/%.o: tests/unit/%.c
	@mkdir -p $$(dir $$@)
	$$(say) CC $$<
	$$(Q)$$(CC) $(2) -c -o $$@ $$<

$(1)/libmoonws.a: $(UNIT_LIBSRC:src/%.c=$(1)/obj/%.o)
	@rm -f $$@
	$$(say) AR $$@
	$$(Q)$$(AR) rcs $$@ $$^

$(1)/test_%: $(1)/test_%.o $(1)/libmoonws.a
	$$(say) LD $$@
	$$(Q)$$(CC) $(3) -o $$@ $$< $(1)/libmoonws.a $$(UNIT_LIBS)

.PRECIOUS: $(1)/%.o $(1)/obj/%.o

-include $$(wildcard $(1)/*.d $(1)/obj/*/*.d)
endef

$(eval $(call unit_build,$(UNIT_DIR),$(UNIT_CFLAGS),$(UNIT_SAN)))

# Each binary's output goes to build/unit/NAME.log; its summary line is
# printed, the whole log only when it failed or crashed (no summary line).
unit: $(UNIT_BIN)
	@export ASAN_OPTIONS=abort_on_error=0:detect_leaks=1 \
	        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1; \
	 cases=0; failed=0; broken=0; \
	 for t in $(UNIT_BIN); do \
	   name=$${t##*/}; log=$(UNIT_DIR)/$$name.log; \
	   $$t $(UNIT_ARGS) >$$log 2>&1; rc=$$?; \
	   line=$$(grep -E "^$$name: [0-9]+ cases, [0-9]+ failed" $$log | tail -n 1); \
	   if [ -z "$$line" ]; then \
	     cat $$log; echo "$$name: CRASHED (exit $$rc), log in $$log"; broken=$$((broken + 1)); \
	     continue; \
	   fi; \
	   if [ $$rc -ne 0 ]; then cat $$log; broken=$$((broken + 1)); else echo "$$line"; fi; \
	   set -- $$line; cases=$$((cases + $$2)); failed=$$((failed + $$4)); \
	 done; \
	 echo "unit: $$cases cases, $$failed failed, $$broken of $(words $(UNIT_BIN)) binaries failed"; \
	 [ $$broken -eq 0 ]

# ---- ThreadSanitizer ----
# The unit tests that start threads, built again with -fsanitize=thread (it
# cannot be combined with ASan), then the server built with it as
# build/tsan/moonws, against which the multi-worker specs run (TSAN_SPECS,
# with MOONWS_TEST_WORKERS=2 for the specs that do not pick their own
# workers). A report fails the run: a unit binary exits 66, the server's
# reports are written to build/tsan/reports/ and printed. (Not the CPU
# budget's specs: ThreadSanitizer hands a signal to its handler only when
# the thread next calls an intercepted function, which a handler spinning
# in Lua never does.)

TSAN_DIR    := $(BUILD)/tsan/unit
TSAN_SAN    := -fsanitize=thread -fno-omit-frame-pointer
TSAN_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -MMD -MP $(WARN) $(TSAN_SAN) -Isrc
TSAN_UNIT   := test_shdict test_inbox test_connid test_cluster_chans test_cluster_link \
               test_metrics test_traffic_log test_metrics_http
TSAN_BIN    := $(addprefix $(TSAN_DIR)/,$(TSAN_UNIT))
TSAN_SPECS  ?= spec/workers_spec.lua spec/dict_spec.lua spec/examples_spec.lua spec/cluster_spec.lua
TSAN_REPORTS := $(BUILD)/tsan/reports

$(eval $(call unit_build,$(TSAN_DIR),$(TSAN_CFLAGS),$(TSAN_SAN)))

tsan: $(TSAN_BIN)
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/tsan SANITIZE=thread OPT=-O1 $(BUILD)/tsan/moonws
	@export TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1"; bad=0; \
	 for t in $(TSAN_BIN); do \
	   name=$${t##*/}; log=$(TSAN_DIR)/$$name.log; \
	   if $$t >$$log 2>&1; then \
	     echo "tsan: $$(grep -E "^$$name: [0-9]+ cases" $$log)"; \
	   else \
	     cat $$log; echo "tsan: $$name FAILED, log in $$log"; bad=$$((bad + 1)); \
	   fi; \
	 done; \
	 echo "tsan: $$bad of $(words $(TSAN_BIN)) binaries failed"; [ $$bad -eq 0 ]
	@rm -rf $(TSAN_REPORTS); mkdir -p $(TSAN_REPORTS); \
	 echo "tsan: $(TSAN_SPECS) against $(BUILD)/tsan/moonws"; \
	 TSAN_OPTIONS="exitcode=66 second_deadlock_stack=1 log_path=$(abspath $(TSAN_REPORTS))/moonws" \
	 MOONWS_BIN=$(BUILD)/tsan/moonws MOONWS_TEST_WORKERS=2 \
	   lua5.4 $$(command -v busted) $(TSAN_SPECS); rc=$$?; \
	 n=$$(ls $(TSAN_REPORTS) | wc -l); \
	 if [ $$n -gt 0 ]; then cat $(TSAN_REPORTS)/*; fi; \
	 echo "tsan: busted exited $$rc; $$n server$$([ $$n = 1 ] || echo s) reported races (logs in $(TSAN_REPORTS))"; \
	 [ $$rc -eq 0 ] && [ $$n -eq 0 ]

# ---- libFuzzer ----

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 30
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -g -O1 $(WARN) $(FUZZ_SAN) -Isrc
FUZZ_OBJ     := $(CODEC_SRC:src/%.c=$(FUZZ_DIR)/obj/%.o)
# target name = binary name = corpus folder; fuzz_ws_rx.c is built four ways.
FUZZ_PLAIN   := fuzz_http_request fuzz_http_response fuzz_http_chunked \
                fuzz_pmd_negotiate fuzz_pmd_accept fuzz_utf8 fuzz_jws
FUZZ_WS      := fuzz_ws_rx_server fuzz_ws_rx_client fuzz_ws_rx_server_pmd fuzz_ws_rx_client_pmd
FUZZ_TARGETS := $(FUZZ_PLAIN) $(FUZZ_WS)
FUZZ_BIN     := $(addprefix $(FUZZ_DIR)/,$(FUZZ_TARGETS))

fuzz_ws_rx_server_DEFS     := -DFUZZ_CLIENT=0 -DFUZZ_PMD=0
fuzz_ws_rx_client_DEFS     := -DFUZZ_CLIENT=1 -DFUZZ_PMD=0
fuzz_ws_rx_server_pmd_DEFS := -DFUZZ_CLIENT=0 -DFUZZ_PMD=1
fuzz_ws_rx_client_pmd_DEFS := -DFUZZ_CLIENT=1 -DFUZZ_PMD=1

$(FUZZ_DIR)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(say) CC $<
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(addprefix $(FUZZ_DIR)/,$(FUZZ_PLAIN)): $(FUZZ_DIR)/%: tests/fuzz/%.c $(FUZZ_OBJ)
	@mkdir -p $(dir $@)
	$(say) LD $@
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJ) $(UNIT_LIBS)

$(addprefix $(FUZZ_DIR)/,$(FUZZ_WS)): $(FUZZ_DIR)/%: tests/fuzz/fuzz_ws_rx.c $(FUZZ_OBJ)
	@mkdir -p $(dir $@)
	$(say) LD $@
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $($*_DEFS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJ) $(UNIT_LIBS)

fuzz-build: $(FUZZ_BIN)

# The seed corpus stays read-only: new inputs go to build/fuzz/corpus/TARGET,
# crashes to build/fuzz/artifacts/.
fuzz: $(FUZZ_BIN)
	@mkdir -p $(FUZZ_DIR)/artifacts; bad=0; \
	 for t in $(FUZZ_TARGETS); do \
	   mkdir -p $(FUZZ_DIR)/corpus/$$t; \
	   echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
	   if ! $(FUZZ_DIR)/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	          -artifact_prefix=$(FUZZ_DIR)/artifacts/$$t- \
	          $(FUZZ_DIR)/corpus/$$t tests/fuzz/corpus/$$t \
	          >$(FUZZ_DIR)/$$t.log 2>&1; then \
	     tail -n 40 $(FUZZ_DIR)/$$t.log; echo "fuzz: $$t FAILED, log in $(FUZZ_DIR)/$$t.log"; \
	     bad=$$((bad + 1)); \
	   else \
	     grep -E "stat::number_of_executed_units|cov:" $(FUZZ_DIR)/$$t.log | tail -n 2; \
	   fi; \
	 done; \
	 echo "fuzz: $$bad of $(words $(FUZZ_TARGETS)) targets failed"; [ $$bad -eq 0 ]
