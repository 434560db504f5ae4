# Encrypted, integrity-checked virtual disk backend.
#
#   make              build build/bin/{tapdisk,tap-ctl,vdkey} and the Xen backend
#   make check        build and run every test (unit + integration + attack tests)
#   make check SANITIZE=1   the same with ASan+UBSan (separate build dir)
#   make check-xen    boot Xen 4.17 under QEMU (TCG) and test real PV guests
#                     on tapdisk's blkif ring (root; tests/xen/rig.sh)
#   make demo         create an encrypted image, serve it, read it back
#   make format       clang-format the whole tree (make check fails on a difference)
#   make clean
#
# The tree is layered (docs/ARCHITECTURE.md): every folder of LIB_DIRS is
# one layer or one component of a layer, and scripts/check-layers.py (run by
# make check) fails when a folder includes a higher one. Sources are found
# by wildcard: a .c file in a LIB_DIRS folder joins libtd; a file named
# *_main.c is a program; tests/unit/test_*.c is a cmocka test binary.
#
# Two builds of the library: libtd.a, what users run, and libtd-test.a,
# compiled with -DTD_TEST_BUILD and holding the test drivers of
# tests/drivers (fault injection, I/O recording) and the switches that break
# the integrity layer on purpose for the crash simulator. The programs of
# the test build (build/tests/bin) are what tests that need those use; the
# production programs never contain them.

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
# librbd/librados are dlopen()ed by the rbd driver on first use (tapdisk/drivers/rbd_dl.h)
LIBS     := -laio -lcrypto -lkeyutils -largon2 -lseccomp -lxengnttab -lxenevtchn -lm -ldl
TESTLIBS := -lcmocka

# bottom to top (docs/ARCHITECTURE.md, scripts/check-layers.py)
LIB_DIRS := crypt/backend tapdisk/core tapdisk/block tapdisk/drivers tapdisk/qcow2 \
            tapdisk/nbd tapdisk/blkif integrity crypt keymgr tapdisk/registry \
            tapdisk/control keymgr/vdkey tapdisk/daemon
ALL_SRCS := $(wildcard $(addsuffix /*.c,$(LIB_DIRS)))
MAIN_SRCS := $(filter %_main.c,$(ALL_SRCS))
LIB_SRCS := $(filter-out %_main.c,$(ALL_SRCS))
LIB_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS))
TESTDRV_SRCS := $(wildcard tests/drivers/*.c)
TLIB_OBJS := $(patsubst %.c,$(BUILD)/obj-test/%.o,$(LIB_SRCS) $(TESTDRV_SRCS))

PROG_MAIN_tapdisk := tapdisk/daemon/tapdisk_main.c
PROG_MAIN_tap-ctl := tapdisk/control/tapctl_main.c
PROG_MAIN_vdkey   := keymgr/vdkey/vdkey_main.c
PROGNAMES := tapdisk tap-ctl vdkey
PROGS     := $(addprefix $(BUILD)/bin/,$(PROGNAMES))
TPROGS    := $(addprefix $(BUILD)/tests/bin/,$(PROGNAMES))
# The Xen backend daemon, its client tool, and the test stand-in xenstored.
XEN_PROGS := $(BUILD)/xen/tapback $(BUILD)/xen/xs_cli $(BUILD)/tests/xen/xsd_standin
XS_LIBS   := $(shell pkg-config --libs xenstore 2>/dev/null || echo -lxenstore)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
TESTLIB_SRCS := $(wildcard tests/lib/*.c)
TESTLIB_OBJS := $(patsubst %.c,$(BUILD)/obj-test/%.o,$(TESTLIB_SRCS))
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(patsubst tests/tools/%.c,$(BUILD)/tests/tools/%,$(TOOL_SRCS))
FORMAT_SRCS = $(shell git ls-files '*.c' '*.h' 2>/dev/null | grep -v '^fuzz/corpus/')

# Keep the object files of test binaries (make would delete them as
# intermediates, and print that after the test summary).
.SECONDARY:

.PHONY: all check check-xen unit demo clean format check-format check-layers deps bench fuzz
all: $(PROGS) $(XEN_PROGS)

# Missing Debian packages are installed once, before the first compile.
$(BUILD)/.deps-ok: scripts/install-deps.sh
	@./scripts/install-deps.sh
	@mkdir -p $(BUILD) && touch $@

$(BUILD)/obj/%.o: %.c | $(BUILD)/.deps-ok
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<
$(BUILD)/obj-test/%.o: %.c | $(BUILD)/.deps-ok
	@mkdir -p $(dir $@)
	@echo "  CC/test $<"
	@$(CC) $(CFLAGS) -DTD_TEST_BUILD -MMD -MP -c -o $@ $<

$(BUILD)/libtd.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	@rm -f $@ && ar rcs $@ $^
$(BUILD)/libtd-test.a: $(TLIB_OBJS)
	@mkdir -p $(dir $@)
	@rm -f $@ && ar rcs $@ $^

# the production programs, and the same programs built with the test drivers
define prog_rules
$(BUILD)/bin/$(1): $(BUILD)/obj/$(PROG_MAIN_$(1):.c=.o) $(BUILD)/libtd.a
	@mkdir -p $$(dir $$@)
	@echo "  LD      $$@"
	@$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LIBS)
$(BUILD)/tests/bin/$(1): $(BUILD)/obj-test/$(PROG_MAIN_$(1):.c=.o) $(BUILD)/libtd-test.a
	@mkdir -p $$(dir $$@)
	@echo "  LD/test $$@"
	@$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LIBS)
endef
$(foreach p,$(PROGNAMES),$(eval $(call prog_rules,$(p))))

$(BUILD)/xen/%: xen/%.c | $(BUILD)/.deps-ok
	@mkdir -p $(@D)
	@echo "  CC/LD   $@"
	@$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) $(XS_LIBS)
$(BUILD)/tests/xen/%: tests/xen/%.c | $(BUILD)/.deps-ok
	@mkdir -p $(@D)
	@echo "  CC/LD   $@"
	@$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) $(XS_LIBS)

$(BUILD)/tests/%: $(BUILD)/obj-test/tests/unit/%.o $(TESTLIB_OBJS) $(BUILD)/libtd-test.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(TESTLIBS)
$(BUILD)/tests/tools/%: $(BUILD)/obj-test/tests/tools/%.o $(TESTLIB_OBJS) $(BUILD)/libtd-test.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) -lnbd

unit: $(UNIT_BINS)

# Installs missing Debian packages (needs root; no-op when all present).
deps:
	@./scripts/install-deps.sh

check: deps all $(TPROGS) $(UNIT_BINS) $(TOOL_BINS)
	BUILD=$(BUILD) ./tests/run-tests.sh

# The real-Xen test: tests/xen/rig.sh fetches the pinned Debian packages
# (cached in $(BUILD)/xen-rig/debs), boots Xen + dom0 under QEMU and runs PV
# guests whose disks tapdisk serves (docs/XEN.md). Skipped, with the reason,
# without root or qemu-system-x86_64.
check-xen: deps all
	@BUILD=$(BUILD) ./tests/xen/rig.sh all; rc=$$?; \
	if [ $$rc = 77 ]; then echo "check-xen: skipped"; exit 0; fi; exit $$rc

demo: deps all
	BUILD=$(BUILD) ./scripts/demo.sh

bench: deps all
	BUILD=$(BUILD) ./bench/run.sh

# libFuzzer (clang) on every parser; FUZZ_TIME seconds per target.
FUZZ_TIME ?= 600
fuzz:
	fuzz/run.sh --time $(FUZZ_TIME)

# One formatter for the whole tree (.clang-format); make check runs
# check-format and check-layers as tests (tests/integration/t-tree-*.sh).
format:
	clang-format -i $(FORMAT_SRCS)
check-format:
	@scripts/check-format.sh
check-layers:
	@python3 scripts/check-layers.py

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(BUILD) -path '$(BUILD)/xen-rig' -prune -o -name '*.d' -type f -print 2>/dev/null)
