# lua-account-activity
#   make            build account_activity/core.so for Lua 5.4 (build/lua5.4/)
#   make LUA=luajit build it for LuaJIT 2.1 / OpenResty (build/luajit/)
#   make test       every spec under Lua 5.4 and LuaJIT, plus the nginx specs
#   make demo       the main job, on the built-in emulator (no network)
#   make deps       apt-get what is missing (as root)
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
AA_CFLAGS = -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC -fvisibility=hidden $(WARN) \
            $(shell $(PKG) --cflags $(LUA_PC) libcurl libcrypto)
AA_LIBS   = $(shell $(PKG) --libs libcurl libcrypto)

SRCS    := src/core.c src/crypto.c src/oauth1.c src/http.c
HDRS    := $(wildcard src/*.h)
OBJS     = $(SRCS:src/%.c=$(BUILD)/obj/%.o)
CORE     = $(BUILD)/account_activity/core.so

LMOD_DIR ?= $(PREFIX)/share/lua/$(LUA_ABI)
CMOD_DIR ?= $(PREFIX)/lib/lua/$(LUA_ABI)

.PHONY: all both test demo deps install clean lint memcheck asan fuzz soak bench deps-check

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

install: $(CORE)
	install -d $(DESTDIR)$(CMOD_DIR)/account_activity $(DESTDIR)$(LMOD_DIR)/account_activity
	install -m 0755 $(CORE) $(DESTDIR)$(CMOD_DIR)/account_activity/core.so
	cd lua && find account_activity -type d -exec install -d $(DESTDIR)$(LMOD_DIR)/{} \;
	cd lua && find account_activity -name '*.lua' -exec install -m 0644 {} $(DESTDIR)$(LMOD_DIR)/{} \;
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 bin/account-activity $(DESTDIR)$(PREFIX)/bin/account-activity

clean:
	rm -rf build

lint:
	luacheck lua spec bin examples bench
	cppcheck --error-exitcode=1 --enable=warning,performance,portability --inline-suppr \
	  --suppress=missingIncludeSystem -I src src

memcheck: both
	sh spec/run --memcheck

asan:
	$(MAKE) LUA=lua5.4 BUILD=build/asan CC=clang \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
	$(MAKE) LUA=luajit
	sh spec/run --asan
