# Encrypted, integrity-checked virtual disk backend.
#
#   make              build build/bin/{tapdisk,tap-ctl,vdkey} and the Xen backend
#   make check        build and run every test (unit + integration + attack tests)
#   make check SANITIZE=1   the same with ASan+UBSan (separate build dir)
#   make check-xen    boot Xen 4.17 under QEMU (TCG) and test real PV guests
#                     on tapdisk's blkif ring (root; tests/xen/rig.sh)
#   make check-systemd  boot Debian with systemd under QEMU (TCG), the .deb
#                     installed: VBDs through tapdisk@.service (tests/systemd/vm.sh)
#   make demo         create an encrypted image, serve it, read it back
#   make format       clang-format the whole tree (make check fails on a difference)
#   make install      install programs, man pages, units, completion (PREFIX, DESTDIR, ...)
#   make uninstall    remove what make install installed
#   make deb / deb-check   the Debian packages; build, install in a throwaway root, demo
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
# zlib: the vmdk driver inflates stream-optimized grains (README.md, "Libraries")
LIBS     += -lz
TESTLIBS := -lcmocka
# Token keyslots, vdkey only, never tapdisk (README.md, "Libraries"):
# Tang (keymgr/tang.c): libjose (JWK/JWS/ECMR), jansson (its JSON), libcurl
# (HTTP); TPM2 (keymgr/tpm2.c): libtss2. The unit tests link the token
# codecs and the NV anchor record.
TANG_LIBS := -ljose -ljansson -lcurl
TPM2_LIBS := -ltss2-esys -ltss2-tctildr -ltss2-mu -ltss2-rc
LIBS_vdkey := $(TANG_LIBS) $(TPM2_LIBS)
LIBS_tang_point := $(LIBS_vdkey)
LIBS_test_tang := $(TANG_LIBS)
TESTLIBS += $(TPM2_LIBS)

# bottom to top (docs/ARCHITECTURE.md, scripts/check-layers.py)
LIB_DIRS := crypt/backend tapdisk/core tapdisk/block tapdisk/drivers tapdisk/qcow2 tapdisk/vmdk \
            tapdisk/qos tapdisk/nbd tapdisk/blkif integrity crypt keymgr tapdisk/registry \
            tapdisk/control keymgr/vdkey tapdisk/daemon
LIB_DIRS += tapdisk/vhd
ALL_SRCS := $(wildcard $(addsuffix /*.c,$(LIB_DIRS)))
MAIN_SRCS := $(filter %_main.c,$(ALL_SRCS))
# vdkey's wiping malloc/free (keymgr/vdkey/wipe_heap.h) replaces the whole
# process's allocator: it must never reach libtd, where any program's
# malloc would pull it in. Linked only into vdkey and its unit test (below).
WIPE_HEAP_SRC := keymgr/vdkey/wipe_heap.c
LIB_SRCS := $(filter-out %_main.c $(WIPE_HEAP_SRC),$(ALL_SRCS))
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
all: $(PROGS) $(XEN_PROGS) man units

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
	@$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LIBS) $$(LIBS_$(1))
$(BUILD)/tests/bin/$(1): $(BUILD)/obj-test/$(PROG_MAIN_$(1):.c=.o) $(BUILD)/libtd-test.a
	@mkdir -p $$(dir $$@)
	@echo "  LD/test $$@"
	@$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LIBS) $$(LIBS_$(1))
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
	@$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(TESTLIBS) $(LIBS_$*)
$(BUILD)/tests/tools/%: $(BUILD)/obj-test/tests/tools/%.o $(TESTLIB_OBJS) $(BUILD)/libtd-test.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) -lnbd $(LIBS_$*)

# the wiping allocator: vdkey (production and test build) and test_heap_wipe
$(BUILD)/bin/vdkey: $(BUILD)/obj/$(WIPE_HEAP_SRC:.c=.o)
$(BUILD)/tests/bin/vdkey: $(BUILD)/obj-test/$(WIPE_HEAP_SRC:.c=.o)
$(BUILD)/tests/test_heap_wipe: $(BUILD)/obj-test/$(WIPE_HEAP_SRC:.c=.o)
LIBS_test_heap_wipe := $(TANG_LIBS)

unit: $(UNIT_BINS)

# Installs missing Debian packages (needs root; no-op when all present).
deps:
	@./scripts/install-deps.sh

# make check builds with one job per CPU unless given -j, then runs the
# tests (tests/run-tests.sh: TD_TEST_JOBS at a time, default one per CPU).
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
check: deps
	@$(MAKE) --no-print-directory $(if $(filter -j%,$(MAKEFLAGS)),,-j$(JOBS)) check-build
	BUILD=$(BUILD) ./tests/run-tests.sh
.PHONY: check-build
check-build: all $(TPROGS) $(UNIT_BINS) $(TOOL_BINS)

# The real-Xen test: tests/xen/rig.sh fetches the pinned Debian packages
# (cached in $(BUILD)/xen-rig/debs), boots Xen + dom0 under QEMU and runs PV
# guests whose disks tapdisk serves (docs/XEN.md). Skipped, with the reason,
# without root or qemu-system-x86_64.
check-xen: deps all
	@BUILD=$(BUILD) ./tests/xen/rig.sh all; rc=$$?; \
	if [ $$rc = 77 ]; then echo "check-xen: skipped"; exit 0; fi; exit $$rc

# The real-systemd test: tests/systemd/vm.sh debootstraps a Debian 12 root
# (cached in $(BUILD)/systemd-vm/base), installs the freshly built .debs
# in it, boots it under QEMU with systemd as PID 1 and starts, reads,
# kills and stops VBDs through tapdisk@.service. Skipped, with the reason,
# without root or qemu-system-x86_64.
.PHONY: check-systemd
check-systemd: deps deb
	@BUILD=$(BUILD) ./tests/systemd/vm.sh all; rc=$$?; \
	if [ $$rc = 77 ]; then echo "check-systemd: skipped"; exit 0; fi; exit $$rc

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

-include $(shell find $(BUILD) -path '$(BUILD)/xen-rig' -prune -o -path '$(BUILD)/systemd-vm' -prune -o -name '*.d' -type f -print 2>/dev/null)

# ---------------------------------------------------------------------------
# Installing (README, "Installing"): the GNU directory variables, and DESTDIR
# to stage the whole tree below another root (packages, tests). sysconfdir
# stays /etc whatever the prefix: the programs read /etc/tdcrypt/tapdisk.conf.
PREFIX         ?= /usr/local
prefix         ?= $(PREFIX)
exec_prefix    ?= $(prefix)
bindir         ?= $(exec_prefix)/bin
sbindir        ?= $(exec_prefix)/sbin
libexecdir     ?= $(exec_prefix)/libexec
pkglibexecdir  ?= $(libexecdir)/tdcrypt
datarootdir    ?= $(prefix)/share
mandir         ?= $(datarootdir)/man
docdir         ?= $(datarootdir)/doc/tdcrypt
sysconfdir     ?= /etc
systemdunitdir ?= $(prefix)/lib/systemd/system
bashcompdir    ?= $(datarootdir)/bash-completion/completions
INSTALL        ?= install

# tap-ctl finds the installed tapdisk in $(pkglibexecdir) (after TAPDISK_BIN
# and its own directory, before PATH), and the units name the programs: the
# directories are baked in, so what uses them is rebuilt when they change
# (the stamp's contents, and so its time, change only then).
DIRS_STAMP := $(BUILD)/.installdirs
DIRS_DEFS  := -DTD_BINDIR='"$(bindir)"' -DTD_PKGLIBEXECDIR='"$(pkglibexecdir)"'
DIRS_LINE  := $(DIRS_DEFS) $(sbindir) $(sysconfdir)
$(DIRS_STAMP): FORCE
	@mkdir -p $(@D)
	@echo '$(DIRS_LINE)' | cmp -s - $@ 2>/dev/null || echo '$(DIRS_LINE)' >$@
TAPCTL_OBJS := $(BUILD)/obj/$(PROG_MAIN_tap-ctl:.c=.o) $(BUILD)/obj-test/$(PROG_MAIN_tap-ctl:.c=.o)
$(TAPCTL_OBJS): CFLAGS += $(DIRS_DEFS)
$(TAPCTL_OBJS): $(DIRS_STAMP)
.PHONY: FORCE install uninstall man units deb deb-check
FORCE:

# Man pages: scdoc sources in man/, generated at build time.
MAN_SRCS := $(wildcard man/*.scd)
MANPAGES := $(patsubst man/%.scd,$(BUILD)/man/%,$(MAN_SRCS))
man: $(MANPAGES)
$(BUILD)/man/%: man/%.scd | $(BUILD)/.deps-ok
	@mkdir -p $(@D)
	@echo "  SCDOC   $@"
	@scdoc <$< >$@.tmp && mv $@.tmp $@

# systemd units and the key helper, with the install directories filled in.
UNIT_SRCS := $(wildcard systemd/*.in)
UNITS     := $(patsubst systemd/%.in,$(BUILD)/systemd/%,$(UNIT_SRCS))
units: $(UNITS)
$(BUILD)/systemd/%: systemd/%.in $(DIRS_STAMP)
	@mkdir -p $(@D)
	@echo "  GEN     $@"
	@sed -e 's|@bindir@|$(bindir)|g' -e 's|@sbindir@|$(sbindir)|g' \
	     -e 's|@pkglibexecdir@|$(pkglibexecdir)|g' -e 's|@sysconfdir@|$(sysconfdir)|g' \
	     $< >$@.tmp && mv $@.tmp $@

# What make install puts where; make uninstall removes exactly these.
MAN8 := $(filter %.8,$(MANPAGES))
MAN5 := $(filter %.5,$(MANPAGES))
INSTALLED := $(DESTDIR)$(bindir)/tap-ctl $(DESTDIR)$(bindir)/vdkey \
	$(DESTDIR)$(pkglibexecdir)/tapdisk $(DESTDIR)$(pkglibexecdir)/vbd-key \
	$(DESTDIR)$(pkglibexecdir)/setup-user \
	$(DESTDIR)$(sbindir)/tapback $(DESTDIR)$(sysconfdir)/xen/scripts/block-tdcrypt \
	$(patsubst $(BUILD)/man/%,$(DESTDIR)$(mandir)/man8/%,$(MAN8)) \
	$(patsubst $(BUILD)/man/%,$(DESTDIR)$(mandir)/man5/%,$(MAN5)) \
	$(DESTDIR)$(systemdunitdir)/tapdisk@.service $(DESTDIR)$(systemdunitdir)/tapback.service \
	$(DESTDIR)$(bashcompdir)/tap-ctl $(DESTDIR)$(bashcompdir)/vdkey \
	$(DESTDIR)$(docdir)/examples/vbd.conf $(DESTDIR)$(docdir)/examples/tapdisk.conf
HOSTCONF := $(DESTDIR)$(sysconfdir)/tdcrypt/tapdisk.conf

install: $(PROGS) $(BUILD)/xen/tapback man units
	$(INSTALL) -d $(DESTDIR)$(bindir) $(DESTDIR)$(sbindir) $(DESTDIR)$(pkglibexecdir) \
		$(DESTDIR)$(mandir)/man5 $(DESTDIR)$(mandir)/man8 $(DESTDIR)$(systemdunitdir) \
		$(DESTDIR)$(bashcompdir) $(DESTDIR)$(docdir)/examples \
		$(DESTDIR)$(sysconfdir)/tdcrypt/vbd $(DESTDIR)$(sysconfdir)/xen/scripts
	$(INSTALL) -m 0755 $(BUILD)/bin/tap-ctl $(BUILD)/bin/vdkey $(DESTDIR)$(bindir)/
	$(INSTALL) -m 0755 $(BUILD)/bin/tapdisk $(BUILD)/systemd/vbd-key $(DESTDIR)$(pkglibexecdir)/
	$(INSTALL) -m 0755 scripts/setup-user.sh $(DESTDIR)$(pkglibexecdir)/setup-user
	$(INSTALL) -m 0755 $(BUILD)/xen/tapback $(DESTDIR)$(sbindir)/
	$(INSTALL) -m 0755 xen/block-tdcrypt $(DESTDIR)$(sysconfdir)/xen/scripts/
	$(INSTALL) -m 0644 $(MAN8) $(DESTDIR)$(mandir)/man8/
	$(INSTALL) -m 0644 $(MAN5) $(DESTDIR)$(mandir)/man5/
	$(INSTALL) -m 0644 $(BUILD)/systemd/tapdisk@.service $(BUILD)/systemd/tapback.service \
		$(DESTDIR)$(systemdunitdir)/
	$(INSTALL) -m 0644 completion/tap-ctl completion/vdkey $(DESTDIR)$(bashcompdir)/
	$(INSTALL) -m 0644 conf/vbd.conf conf/tapdisk.conf $(DESTDIR)$(docdir)/examples/
	@if [ -e $(HOSTCONF) ]; then echo "keeping the existing $(HOSTCONF)"; else \
		echo "$(INSTALL) -m 0644 conf/tapdisk.conf $(HOSTCONF)"; \
		$(INSTALL) -m 0644 conf/tapdisk.conf $(HOSTCONF); fi

# The host settings file goes only while it is still the example.
uninstall:
	rm -f $(INSTALLED)
	@if [ -f $(HOSTCONF) ] && cmp -s $(HOSTCONF) conf/tapdisk.conf; then \
		echo "rm -f $(HOSTCONF)"; rm -f $(HOSTCONF); \
	elif [ -e $(HOSTCONF) ]; then echo "keeping $(HOSTCONF) (changed since make install)"; fi
	rmdir $(DESTDIR)$(pkglibexecdir) $(DESTDIR)$(docdir)/examples $(DESTDIR)$(docdir) \
		$(DESTDIR)$(sysconfdir)/tdcrypt/vbd $(DESTDIR)$(sysconfdir)/tdcrypt \
		$(DESTDIR)$(sysconfdir)/xen/scripts $(DESTDIR)$(sysconfdir)/xen 2>/dev/null || true

# Debian packages (debian/), built from a copy of the tree into
# $(BUILD)/deb; deb-check builds them, runs lintian, installs them, runs
# the demo flow from the installed programs, purges them and leaves the
# machine as it was.
deb:
	scripts/deb-build.sh $(BUILD)/deb
deb-check:
	scripts/deb-check.sh $(BUILD)/deb
