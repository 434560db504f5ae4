# Encrypted, integrity-checked virtual disk backend.
#
#   make              build build/bin/{tapdisk,tap-ctl,vdkey}
#   make check        build and run every test (unit + integration)
#   make check SANITIZE=1   the same with ASan+UBSan (separate build dir)
#   make demo         create an encrypted image, serve it, read it back
#   make clean
#
# Sources are found by wildcard: a library file in tapdisk/, crypt/,
# integrity/ or keymgr/ joins libtd automatically; a file named *_main.c
# is a program; tests/unit/test_*.c is a cmocka test binary.

CC      ?= cc
ifeq ($(SANITIZE),1)
BUILD   ?= build-san
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD   ?= build
SANFLAGS =
endif

OPT      ?= -O2 -g
CFLAGS   += $(OPT) -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wno-unused-parameter -D_GNU_SOURCE -pthread \
            -fstack-protector-strong -D_FORTIFY_SOURCE=2 -I. $(SANFLAGS)
LDFLAGS  += -pthread $(SANFLAGS)
# librbd/librados are dlopen()ed by the rbd driver on first use (tapdisk/rbd_dl.h)
LIBS     := -laio -lcrypto -lkeyutils -largon2 -lseccomp -lm -ldl
TESTLIBS := -lcmocka

LIB_DIRS := tapdisk crypt integrity keymgr
ALL_SRCS := $(wildcard $(addsuffix /*.c,$(LIB_DIRS)))
MAIN_SRCS := $(filter %_main.c,$(ALL_SRCS))
LIB_SRCS := $(filter-out %_main.c,$(ALL_SRCS))
LIB_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS))

PROGS    := $(BUILD)/bin/tapdisk $(BUILD)/bin/tap-ctl $(if $(wildcard keymgr/vdkey_main.c),$(BUILD)/bin/vdkey)
# The Xen backend daemon and its test stand-in xenstored (xen/).
XEN_PROGS := $(BUILD)/xen/tapback $(BUILD)/xen/xsd_standin $(BUILD)/xen/xs_cli
XS_LIBS   := $(shell pkg-config --libs xenstore 2>/dev/null || echo -lxenstore)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
TESTLIB_SRCS := $(wildcard tests/lib/*.c)
TESTLIB_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(TESTLIB_SRCS))
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(patsubst tests/tools/%.c,$(BUILD)/tests/tools/%,$(TOOL_SRCS))

# Keep the object files of test binaries (make would delete them as
# intermediates, and print that after the test summary).
.SECONDARY:

.PHONY: all check unit demo clean format deps bench fuzz
all: $(PROGS) $(XEN_PROGS)

# Missing Debian packages are installed once, before the first compile.
$(BUILD)/.deps-ok: scripts/install-deps.sh
	@./scripts/install-deps.sh
	@mkdir -p $(BUILD) && touch $@

$(BUILD)/obj/%.o: %.c | $(BUILD)/.deps-ok
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/libtd.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	@rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/tapdisk: $(BUILD)/obj/tapdisk/tapdisk_main.o $(BUILD)/libtd.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)
$(BUILD)/bin/tap-ctl: $(BUILD)/obj/tapdisk/tapctl_main.o $(BUILD)/libtd.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)
$(BUILD)/bin/vdkey: $(BUILD)/obj/keymgr/vdkey_main.o $(BUILD)/libtd.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/xen/%: xen/%.c | $(BUILD)/.deps-ok
	@mkdir -p $(@D)
	@echo "  CC/LD   $@"
	@$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) $(XS_LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(TESTLIB_OBJS) $(BUILD)/libtd.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(TESTLIBS)
$(BUILD)/tests/tools/%: $(BUILD)/obj/tests/tools/%.o $(TESTLIB_OBJS) $(BUILD)/libtd.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) -lnbd

unit: $(UNIT_BINS)

# Installs missing Debian packages (needs root; no-op when all present).
deps:
	@./scripts/install-deps.sh

check: deps all $(UNIT_BINS) $(TOOL_BINS)
	BUILD=$(BUILD) ./tests/run-tests.sh

demo: deps all
	BUILD=$(BUILD) ./scripts/demo.sh

bench: deps all
	BUILD=$(BUILD) ./bench/run.sh

# libFuzzer (clang) on every parser; FUZZ_TIME seconds per target.
FUZZ_TIME ?= 600
fuzz:
	fuzz/run.sh --time $(FUZZ_TIME)

format:
	clang-format -i $(ALL_SRCS) $(wildcard tests/*/*.c tests/*/*.h */*.h)

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
