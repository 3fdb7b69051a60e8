# C unit tests of the pure codecs and libFuzzer targets for every parser.
# Included by the top-level Makefile; uses its WARN, CODEC_SRC and BUILD.
#
#   make unit                 build and run tests/unit/test_*.c (ASan+UBSan always on)
#   make unit UNIT=test_utf8  only that binary (extra args: UNIT_ARGS=test_name ...)
#   make fuzz                 build the fuzzers with clang, run each FUZZ_SECONDS
#   make fuzz-build           only build them (build/fuzz/fuzz_*)
#
# Unit tests compile the codecs (and the thread-safe util/transport pieces
# they test) again with the sanitizers into build/unit/obj, so they never
# mix with the objects of `make all`. The objects go into one archive: each
# test binary links only the ones it uses (none pulls conn.c in).

.PHONY: unit fuzz fuzz-build

UNIT_DIR    := $(BUILD)/unit
UNIT_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
               -fno-omit-frame-pointer
UNIT_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -MMD -MP $(WARN) $(UNIT_SAN) -Isrc
UNIT_LIBS   := -lev -lssl -lcrypto -lz -lpthread
UNIT_SRC    := $(sort $(wildcard tests/unit/test_*.c))
UNIT_ALL    := $(UNIT_SRC:tests/unit/%.c=%)
UNIT        ?= $(UNIT_ALL)
UNIT_BIN    := $(addprefix $(UNIT_DIR)/,$(UNIT))
UNIT_LIBSRC := $(CODEC_SRC) src/util/siphash.c src/util/shdict.c src/util/xshbuf.c \
               src/transport/inbox.c

# The rules of one build of the unit tests: $(1) its folder, $(2) the
# compiler flags, $(3) the sanitizer flags to link with.
define unit_build
$(1)/obj/%.o: src/%.c
	@mkdir -p $$(dir $$@)
	$$(CC) $(2) -c -o $$@ $$<

$(1)/%.o: tests/unit/%.c
	@mkdir -p $$(dir $$@)
	$$(CC) $(2) -c -o $$@ $$<

$(1)/libmoonws.a: $(UNIT_LIBSRC:src/%.c=$(1)/obj/%.o)
	@rm -f $$@
	$$(AR) rcs $$@ $$^

$(1)/test_%: $(1)/test_%.o $(1)/libmoonws.a
	$$(CC) $(3) -o $$@ $$< $(1)/libmoonws.a $$(UNIT_LIBS)

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
