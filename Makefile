# lua-account-activity
#   make            build account_activity/core.so for Lua 5.4 (build/lua5.4/)
#   make LUA=luajit build it for LuaJIT 2.1 / OpenResty (build/luajit/)
#   make test       every spec under Lua 5.4 and LuaJIT, plus the nginx specs
#   make demo       the main job, on the built-in emulator (no network)
#   make deps       apt-get what is missing (as root)
#   make install    both builds and bin/account-activity into PREFIX (/usr/local)
# See README.md.

LUA      ?= lua5.4
PREFIX   ?= /usr/local
DESTDIR  ?=
CC       ?= cc
CFLAGS   ?= -O2 -g
PKG      ?= pkg-config

ifeq ($(LUA),luajit)
  LUA_PC     := luajit
  LUA_ABI    := 5.1
else
  LUA_PC     := lua5.4
  LUA_ABI    := 5.4
endif
BUILD    ?= build/$(LUA)

WARN     := -Wall -Wextra -Wpedantic -Werror
# No Lua library on the link line: the host (lua5.4, luajit, nginx) provides it.
LUA_CFLAGS ?= $(shell $(PKG) --cflags $(LUA_PC))
AA_CFLAGS = -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC -fvisibility=hidden $(WARN) \
            $(LUA_CFLAGS) $(shell $(PKG) --cflags libcurl libcrypto)
AA_LIBS   = $(shell $(PKG) --libs libcurl libcrypto)

SRCS    := src/core.c src/crypto.c src/oauth1.c src/session.c src/batch.c src/stream.c src/json.c src/proc.c
HDRS    := $(wildcard src/*.h)
OBJS     = $(SRCS:src/%.c=$(BUILD)/obj/%.o)
CORE     = $(BUILD)/account_activity/core.so

LMOD_DIR ?= $(PREFIX)/share/lua/$(LUA_ABI)
CMOD_DIR ?= $(PREFIX)/lib/lua/$(LUA_ABI)

.PHONY: all both test demo deps install install-abi rock install-rock clean lint memcheck asan fuzz soak bench deps-check

all: $(CORE)

$(BUILD)/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AA_CFLAGS) -c $< -o $@

$(CORE): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -shared -o $@ $(OBJS) $(AA_LIBS) $(LDFLAGS)

both:
	$(MAKE) LUA=lua5.4
	$(MAKE) LUA=luajit

test: deps-check both
	sh spec/run

demo: deps-check both
	lua5.4 examples/demo.lua

deps:
	sh .ci/deps.sh

deps-check:
	@sh .ci/deps.sh --check

# Both builds: Lua 5.4 scripts load .../lua/5.4, and the nginx workers of the
# emulator and of `events tail` (LuaJIT) load .../lua/5.1 of the same PREFIX.
install:
	$(MAKE) LUA=lua5.4 install-abi
	$(MAKE) LUA=luajit install-abi
	install -d "$(DESTDIR)$(PREFIX)/bin"
	install -m 0755 bin/account-activity "$(DESTDIR)$(PREFIX)/bin/account-activity"

# One build (LUA=...) into LMOD_DIR and CMOD_DIR.
install-abi: $(CORE)
	install -d "$(DESTDIR)$(CMOD_DIR)/account_activity" "$(DESTDIR)$(LMOD_DIR)/account_activity"
	install -m 0755 $(CORE) "$(DESTDIR)$(CMOD_DIR)/account_activity/core.so"
	cd lua && find account_activity -type d -exec install -d "$(DESTDIR)$(LMOD_DIR)/{}" \;
	cd lua && find account_activity -name '*.lua' -exec install -m 0644 {} "$(DESTDIR)$(LMOD_DIR)/{}" \;

# LuaRocks (the rockspec's build type "make"; it passes LUA_INCDIR, LUADIR,
# LIBDIR, BINDIR): the core for the rock's Lua, and a LuaJIT one for the
# nginx workers of the emulator and `events tail`, in
# LIBDIR/account_activity/luajit/ where nginx_process looks for it.
# Objects per LUA_INCDIR: a 5.1 and a 5.4 rock built from one tree never mix.
ROCK_BUILD = build/rock-$(notdir $(LUA_INCDIR))

rock:
	$(MAKE) BUILD=$(ROCK_BUILD) LUA_CFLAGS=-I$(LUA_INCDIR) all
	if $(PKG) --exists luajit; then $(MAKE) LUA=luajit BUILD=build/rock-luajit all; fi

install-rock:
	install -d "$(LIBDIR)/account_activity" "$(LUADIR)" "$(BINDIR)"
	install -m 0755 $(ROCK_BUILD)/account_activity/core.so "$(LIBDIR)/account_activity/core.so"
	if [ -f build/rock-luajit/account_activity/core.so ]; then \
	  install -d "$(LIBDIR)/account_activity/luajit/account_activity" && \
	  install -m 0755 build/rock-luajit/account_activity/core.so "$(LIBDIR)/account_activity/luajit/account_activity/core.so"; fi
	cd lua && find account_activity -type d -exec install -d "$(LUADIR)/{}" \;
	cd lua && find account_activity -name '*.lua' -exec install -m 0644 {} "$(LUADIR)/{}" \;
	install -m 0755 bin/account-activity "$(BINDIR)/account-activity"

clean:
	rm -rf build

lint:
	luacheck lua spec bin examples bench
	cppcheck --error-exitcode=1 --enable=warning,performance,portability --inline-suppr \
	  --suppress=missingIncludeSystem -I src src

memcheck: both
	sh spec/run --memcheck

# 100,000 client requests and 100,000 signed events; RSS must stay flat.
# (make test runs the same spec with AA_SOAK_N=4000.)
soak: both
	AA_SOAK_N=$${AA_SOAK_N:-100000} SPECS=spec/soak_spec.lua sh spec/run

bench: both
	sh bench/run

ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

asan:
	$(MAKE) LUA=lua5.4 BUILD=build/asan CC=clang CFLAGS="$(ASAN_FLAGS)"
	$(MAKE) LUA=luajit
	clang $(ASAN_FLAGS) -o build/asan/lua5.4 spec/support/lua_asan.c $(shell $(PKG) --cflags --libs lua5.4)
	sh spec/run --asan

# libFuzzer targets (clang, libfuzzer-14-dev): every C entry point that takes
# outside input. Seeds live in fuzz/corpus/<target>; new inputs go to build/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := percent base64 oauth1 verify headers json
FUZZ_CFLAGS  := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -std=c99 -D_POSIX_C_SOURCE=200809L -Isrc $(shell $(PKG) --cflags lua5.4 libcurl libcrypto)
FUZZ_LIBS    := $(shell $(PKG) --libs lua5.4 libcurl libcrypto)

build/fuzz/fuzz_headers: fuzz/fuzz_headers.c fuzz/fuzz_lua.h $(SRCS) $(HDRS)
	@mkdir -p build/fuzz
	clang $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_headers.c $(filter-out src/session.c,$(SRCS)) $(FUZZ_LIBS)

build/fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_lua.h $(SRCS) $(HDRS)
	@mkdir -p build/fuzz
	clang $(FUZZ_CFLAGS) -o $@ $< $(SRCS) $(FUZZ_LIBS)

fuzz: $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus/$$t; cp -n fuzz/corpus/$$t/* build/fuzz/corpus/$$t/ 2>/dev/null; \
	  echo "== fuzz_$$t for $(FUZZ_SECONDS) s"; \
	  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -print_final_stats=1 -artifact_prefix=build/fuzz/$$t- \
	    build/fuzz/corpus/$$t >build/fuzz/$$t.log 2>&1; rc=$$?; \
	  grep -E 'stat::number_of_executed_units|stat::peak_rss|ERROR|SUMMARY|Done' build/fuzz/$$t.log; \
	  if [ $$rc -ne 0 ]; then tail -n 40 build/fuzz/$$t.log; echo "fuzz_$$t FAILED"; exit 1; fi; \
	done
