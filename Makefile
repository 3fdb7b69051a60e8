# moonws — see README.md. `make run` serves the examples, `make test` runs
# every test; both install missing Debian packages first (scripts/deps).

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
SANITIZE ?=

LUA_CFLAGS := $(shell pkg-config --cflags lua5.4 2>/dev/null)
LUA_LIBS   := $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)

WARN = -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
       -Wpointer-arith -Wformat=2 -Wundef -Wwrite-strings -Wno-format-nonliteral
CFLAGS  = -std=c11 -D_GNU_SOURCE -g $(OPT) -fPIC -MMD -MP $(WARN) $(LUA_CFLAGS)
LDLIBS  = -lev $(LUA_LIBS) -lssl -lcrypto -lcrypt -lz -lpthread -lm

ifneq ($(SANITIZE),)
  CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=$(SANITIZE)
endif

# Layers (DESIGN.md §7): util <- transport <- proto <- lua <- main.
# The client (proto/ws_client.c) and its Lua module go into core.so only.
CLIENT_SRC := src/proto/ws_client.c src/proto/wsc_tls.c src/lua/lx_client.c src/lua/lx_process.c
CORE_SRC   := $(filter-out $(CLIENT_SRC),$(wildcard src/util/*.c src/transport/*.c src/proto/*.c))
SERVER_SRC := $(CORE_SRC) $(filter-out $(CLIENT_SRC),$(wildcard src/lua/*.c)) src/main.c
# The codecs the client shares with the server.
CODEC_SRC  := src/util/buf.c src/util/crypto.c src/util/log.c src/util/utf8.c src/util/sslio.c \
              src/util/jws.c \
              src/proto/http_parse.c src/proto/ws_frame.c src/proto/ws_msg.c \
              src/proto/pmd.c src/proto/ws_handshake.c
# lx_json.c is in both: the client encodes tables as the server does.
MODULE_SRC := $(CODEC_SRC) $(CLIENT_SRC) src/lua/lx_json.c

SERVER_OBJ := $(SERVER_SRC:src/%.c=$(BUILD)/obj/%.o)
MODULE_OBJ := $(MODULE_SRC:src/%.c=$(BUILD)/obj/%.o)

MOONWS := $(BUILD)/moonws
MODULE := $(BUILD)/lua/moonws/core.so

.PHONY: all run test deps test-deps clean sanitize unit spec

all: $(MOONWS) $(MODULE)

$(MOONWS): $(SERVER_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(MODULE): $(MODULE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -shared -o $@ $^ -lssl -lcrypto -lz

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

deps:
	@scripts/deps build

test-deps:
	@scripts/deps test

run: deps
	@$(MAKE) --no-print-directory all
	./$(MOONWS) --static examples/public examples

sanitize:
	@$(MAKE) --no-print-directory BUILD=build/asan SANITIZE=address,undefined OPT=-O1 all

test: test-deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory sanitize
	@scripts/test

clean:
	rm -rf build

-include $(SERVER_OBJ:.o=.d) $(MODULE_OBJ:.o=.d)

# C unit tests of the codecs and libFuzzer targets (tests/tests.mk).
-include tests/tests.mk
