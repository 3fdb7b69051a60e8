# moonws — see README.md. `make run` serves the examples, `make test` runs
# every test; both install missing Debian packages first (scripts/deps).
# `make install` / `make uninstall` (PREFIX, DESTDIR) are at the end.

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
SANITIZE ?=

LUA_CFLAGS := $(shell pkg-config --cflags lua5.4 2>/dev/null)
LUA_LIBS   := $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)

WARN = -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
       -Wpointer-arith -Wformat=2 -Wundef -Wwrite-strings -Wno-format-nonliteral
CFLAGS  = -std=c11 -D_GNU_SOURCE -g $(OPT) -fPIC -MMD -MP $(WARN) $(LUA_CFLAGS)
LDLIBS  = -lev $(LUA_LIBS) -lhiredis -lssl -lcrypto -lcrypt -lz -lpthread -lm

# Build lines are short, kernel style ("  CC      src/util/buf.c"); V=1
# prints every command in full instead.
V ?= 0
ifeq ($(V),1)
  Q :=
  say := @true
else
  Q := @
  say := @printf '  %-7s %s\n'
endif

ifneq ($(SANITIZE),)
  CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=$(SANITIZE)
endif

# Layers (docs/architecture.md): util <- transport <- proto <- lua <- server <- main;
# src/cluster (the link to Redis) stands on util and transport only.
# The client (proto/ws_client.c) and its Lua module go into core.so only.
CLIENT_SRC := src/proto/ws_client.c src/proto/wsc_tls.c src/lua/lx_client.c src/lua/lx_process.c
CORE_SRC   := $(filter-out $(CLIENT_SRC),$(wildcard src/util/*.c src/transport/*.c src/cluster/*.c \
                                             src/proto/*.c))
SERVER_SRC := $(CORE_SRC) $(filter-out $(CLIENT_SRC),$(wildcard src/lua/*.c)) \
              $(wildcard src/server/*.c) src/main.c
# The codecs the client shares with the server.
CODEC_SRC  := src/util/buf.c src/util/crypto.c src/util/log.c src/util/utf8.c src/util/sslio.c \
              src/util/membudget.c \
              src/util/jws.c \
              src/proto/http_parse.c src/proto/ws_frame.c src/proto/ws_msg.c \
              src/proto/pmd.c src/proto/ws_handshake.c
# lx_json.c is in both: the client encodes tables as the server does.
MODULE_SRC := $(CODEC_SRC) $(CLIENT_SRC) src/lua/lx_json.c

SERVER_OBJ := $(SERVER_SRC:src/%.c=$(BUILD)/obj/%.o)
MODULE_OBJ := $(MODULE_SRC:src/%.c=$(BUILD)/obj/%.o)

MOONWS := $(BUILD)/moonws
MODULE := $(BUILD)/lua/moonws/core.so

.PHONY: all run test deps test-deps clean sanitize unit spec install uninstall

all: $(MOONWS) $(MODULE)

$(MOONWS): $(SERVER_OBJ)
	$(say) LD $@
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(MODULE): $(MODULE_OBJ)
	@mkdir -p $(dir $@)
	$(say) LD $@
	$(Q)$(CC) $(LDFLAGS) -shared -o $@ $^ -lssl -lcrypto -lz

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(say) CC $<
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

deps:
	@scripts/deps build

test-deps:
	@scripts/deps test

run: deps
	@$(MAKE) --no-print-directory all
	./$(MOONWS) --static examples/public examples

sanitize:
	@$(MAKE) --no-print-directory BUILD=build/asan SANITIZE=address,undefined OPT=-O1 all

# scripts/test builds both trees (quietly when they are up to date), runs
# the unit tests and the specs against both builds, and ends with one
# closing line; `scripts/test spec/x_spec.lua` runs one spec file. `+`: it
# runs make itself, and may share our jobs.
test: test-deps
	+@scripts/test

clean:
	rm -rf build

-include $(SERVER_OBJ:.o=.d) $(MODULE_OBJ:.o=.d)

# ---- install ----
# `make install PREFIX=/usr/local` puts each file where Debian's lua5.4 and
# systemd look without any setting: PREFIX/share/lua/5.4 and PREFIX/lib/lua/5.4
# are on lua5.4's default package.path and package.cpath for /usr/local (and
# /usr), PREFIX/lib/systemd/system on systemd's unit path. DESTDIR stages the
# files elsewhere (for a package) without changing the paths written into the
# unit. `make uninstall` (same PREFIX) removes exactly these files, and the
# folders that are moonws's own when nothing else is left in them.
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
LUADIR  ?= $(PREFIX)/share/lua/5.4
LUACDIR ?= $(PREFIX)/lib/lua/5.4
DOCDIR  ?= $(PREFIX)/share/doc/moonws
UNITDIR ?= $(PREFIX)/lib/systemd/system

LUA_MODULES := client testing bystander
DOC_FILES   := README.md docs/reference.md docs/architecture.md docs/cluster.md \
               docs/operations.md \
               examples/echo.lua examples/chat.lua examples/ticker.lua examples/public/index.html
INSTALLED   := $(BINDIR)/moonws $(LUA_MODULES:%=$(LUADIR)/moonws/%.lua) $(LUACDIR)/moonws/core.so \
               $(DOC_FILES:%=$(DOCDIR)/%) $(UNITDIR)/moonws.service
OWN_DIRS    := $(LUADIR)/moonws $(LUACDIR)/moonws $(DOCDIR)/examples/public $(DOCDIR)/examples \
               $(DOCDIR)/docs $(DOCDIR)

install: all
	$(say) INSTALL $(DESTDIR)$(PREFIX)
	$(Q)install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LUADIR)/moonws $(DESTDIR)$(LUACDIR)/moonws \
	   $(DESTDIR)$(UNITDIR)
	$(Q)install -m 755 $(MOONWS) $(DESTDIR)$(BINDIR)/moonws
	$(Q)install -m 644 $(LUA_MODULES:%=lua/moonws/%.lua) $(DESTDIR)$(LUADIR)/moonws/
	$(Q)install -m 644 $(MODULE) $(DESTDIR)$(LUACDIR)/moonws/core.so
	$(Q)for f in $(DOC_FILES); do install -D -m 644 $$f $(DESTDIR)$(DOCDIR)/$$f || exit 1; done
	$(Q)sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' dist/moonws.service.in \
	   >$(DESTDIR)$(UNITDIR)/moonws.service
	$(Q)chmod 644 $(DESTDIR)$(UNITDIR)/moonws.service

uninstall:
	$(say) RM $(DESTDIR)$(PREFIX)
	$(Q)rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	$(Q)for d in $(addprefix $(DESTDIR),$(OWN_DIRS)); do \
	   [ ! -d $$d ] || rmdir --ignore-fail-on-non-empty $$d; done

# C unit tests of the codecs and libFuzzer targets (tests/tests.mk).
-include tests/tests.mk
