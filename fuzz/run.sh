#!/bin/bash
# Builds the libFuzzer harnesses (fuzz/fuzz_*.c) and runs them.
#
#   fuzz/run.sh [--smoke | --time SECONDS] [--seeds] [TARGET...]
#
#   --smoke      (default) each target runs over its checked-in corpus, then
#                a few thousand mutations; any crash, leak or sanitizer
#                report makes the script exit non-zero.
#   --time N     fuzz each target for N seconds (-max_total_time); new
#                inputs go to build-fuzz/corpus/TARGET, never into the
#                checked-in corpus; crashes land in build-fuzz/crashes/.
#   --seeds      regenerate fuzz/corpus/ from fuzz/gen_seeds.c and exit.
#   --build      build only.
#   TARGET       spec, crypt_header, keyslot, integrity, nbd_proto, qcow2, keylog, blkif,
#                vmdk, qos_ram, vhd, tang, tpm2_token
#                (default: all).
#
# Everything is compiled with clang from the sources directly into
# build-fuzz/ (BUILD_FUZZ overrides it): -O1 -g with ASan + UBSan, the
# project objects with coverage instrumentation (-fsanitize=fuzzer-no-link).
# Exit 77 when clang with libFuzzer is not available.
set -u
cd "$(dirname "$0")/.."
SRC=$PWD
OUT=${BUILD_FUZZ:-$SRC/build-fuzz}
CLANG=${CLANG:-}
mode=smoke secs=0 targets=()

ALL_TARGETS="spec crypt_header keyslot integrity nbd_proto qcow2 keylog blkif vmdk"
ALL_TARGETS="$ALL_TARGETS qos_ram"
# project sources each harness links (pure functions only, no I/O)
declare -A SRCS=(
	[spec]="tapdisk/block/spec.c"
	[crypt_header]="crypt/header.c crypt/backend/cipher.c crypt/backend/secmem.c crypt/backend/volkey.c"
	[keyslot]="crypt/header.c crypt/backend/cipher.c crypt/backend/secmem.c crypt/backend/volkey.c keymgr/keyslot.c"
	[integrity]="integrity/format.c crypt/backend/cipher.c crypt/backend/secmem.c"
	[nbd_proto]="tapdisk/nbd/nbd_proto.c"
	[qcow2]="tapdisk/qcow2/qcow2_format.c"
	[keylog]="keymgr/keylog_fmt.c crypt/backend/cipher.c crypt/backend/secmem.c"
	[blkif]="tapdisk/blkif/blkif_proto.c"
	[vmdk]="tapdisk/vmdk/vmdk_format.c"
)
SRCS[qos_ram]="tapdisk/drivers/ram_spec.c tapdisk/qos/limits.c tapdisk/core/util.c"
# largest input libFuzzer generates for each target
declare -A MAXLEN=(
	[spec]=4200 [crypt_header]=33000 [keyslot]=16500 [integrity]=4400
	[nbd_proto]=4400 [qcow2]=8300 [keylog]=4200 [blkif]=8300
	[vmdk]=16500
)
MAXLEN[qos_ram]=1200
GEN_SRCS="tapdisk/nbd/nbd_proto.c crypt/header.c crypt/backend/cipher.c crypt/backend/secmem.c crypt/backend/volkey.c keymgr/keyslot.c
	integrity/format.c tapdisk/qcow2/qcow2_format.c tapdisk/vmdk/vmdk_format.c"
# vhd (fuzz/fuzz_vhd.c): the VHD format code
ALL_TARGETS="$ALL_TARGETS vhd"
SRCS[vhd]="tapdisk/vhd/vhd_format.c"
MAXLEN[vhd]=10000
# tpm2_token (fuzz/fuzz_tpm2_token.c): the TPM2 keyslot token payload
ALL_TARGETS="$ALL_TARGETS tpm2_token"
SRCS[tpm2_token]="keymgr/tpm2_token.c"
MAXLEN[tpm2_token]=700
declare -A XLIBS=([tpm2_token]="-ltss2-mu")
GEN_SRCS="$GEN_SRCS tapdisk/vhd/vhd_format.c"
# tang (fuzz/fuzz_tang.c): the Tang token and the server's answers (libjose)
ALL_TARGETS="$ALL_TARGETS tang"
SRCS[tang]="keymgr/tang_token.c keymgr/tang.c crypt/backend/cipher.c crypt/backend/secmem.c"
MAXLEN[tang]=8300
XLIBS[tang]="-ljose -ljansson -lcurl"
GEN_SRCS="$GEN_SRCS keymgr/tang_token.c"

while [ $# -gt 0 ]; do
	case $1 in
	--smoke) mode=smoke ;;
	--time) mode=time; secs=${2:?--time needs SECONDS}; shift ;;
	--seeds) mode=seeds ;;
	--build) mode=build ;;
	-h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
	*) targets+=("$1") ;;
	esac
	shift
done
[ ${#targets[@]} -eq 0 ] && read -r -a targets <<<"$ALL_TARGETS"
for t in "${targets[@]}"; do
	[ -n "${SRCS[$t]+x}" ] || { echo "run.sh: unknown target '$t' (known: $ALL_TARGETS)" >&2; exit 2; }
done

find_clang() {
	local c
	for c in $CLANG clang clang-14 clang-15 clang-16; do
		command -v "$c" >/dev/null 2>&1 || continue
		# libFuzzer ships with clang's runtime; prove it links
		if echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }' |
			"$c" -x c -fsanitize=fuzzer,address,undefined -o "$OUT/.probe" - >/dev/null 2>&1; then
			CLANG=$c
			return 0
		fi
	done
	return 1
}
mkdir -p "$OUT"
if ! find_clang; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ -z "${TD_FUZZ_NO_INSTALL:-}" ]; then
		echo "== installing clang" >&2
		apt-get install -y clang >/dev/null 2>&1 || true
	fi
	find_clang || { echo "SKIP: clang with libFuzzer (-fsanitize=fuzzer) is not available"; exit 77; }
fi

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
BASE="-O1 -g -std=gnu11 -D_GNU_SOURCE -pthread -I$SRC $SAN"
LIBS="-lcrypto -largon2 -lm -lz"

# obj SRC FLAVOUR -> prints the object path, compiling it when stale
obj() {
	local src=$1 flav=$2 o="$OUT/obj-$2/${1%.c}.o" extra
	case $flav in
	fz) extra="-fsanitize=fuzzer-no-link" ;;
	*) extra="" ;;
	esac
	if [ ! -f "$o" ] || [ "$SRC/$src" -nt "$o" ] || [ -n "$(find "$SRC" -path "$SRC/build*" -prune -o -name '*.h' -newer "$o" -print -quit)" ]; then
		mkdir -p "$(dirname "$o")"
		"$CLANG" $BASE $extra -Wall -Wno-unused-parameter -c -o "$o" "$SRC/$src" >&2 || return 1
	fi
	echo "$o"
}

build_target() {
	local t=$1 objs="" o s
	for s in ${SRCS[$t]}; do
		[ -f "$SRC/$s" ] || { echo "run.sh: $t: $s does not exist" >&2; return 1; }
		o=$(obj "$s" fz) || { echo "run.sh: $t: cannot compile $s" >&2; return 1; }
		objs="$objs $o"
	done
	"$CLANG" $BASE -fsanitize=fuzzer -Wall -Wextra -Werror -Wno-unused-parameter \
		-o "$OUT/fuzz_$t" "$SRC/fuzz/fuzz_$t.c" $objs $LIBS ${XLIBS[$t]:-} || {
		echo "run.sh: $t: cannot build fuzz/fuzz_$t.c" >&2; return 1; }
}

if [ "$mode" = seeds ]; then
	exec 9>"$OUT/.lock"
	flock 9
	objs=""
	for s in $GEN_SRCS; do objs="$objs $(obj "$s" plain)" || exit 1; done
	"$CLANG" $BASE -Wall -Wextra -Werror -o "$OUT/gen_seeds" "$SRC/fuzz/gen_seeds.c" $objs $LIBS || exit 1
	"$OUT/gen_seeds" "$SRC/fuzz/corpus" || exit 1
	du -sh "$SRC"/fuzz/corpus/*
	exit 0
fi

# ASan: leaks are findings too; keep memory bounded for the KDF paths.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:halt_on_error=1"

rc=0 failed="" built=()
# one build at a time per build dir (make check and make check SANITIZE=1
# may run side by side); the runs themselves only share read-only files
exec 9>"$OUT/.lock"
flock 9
for t in "${targets[@]}"; do
	if build_target "$t"; then
		built+=("$t")
	else
		rc=1; failed="$failed $t(build)"
	fi
done
exec 9>&-
[ "$mode" = build ] && built=()
for t in "${built[@]+"${built[@]}"}"; do
	corpus="$SRC/fuzz/corpus/$t"
	[ -d "$corpus" ] || { echo "run.sh: $t: no corpus at $corpus" >&2; rc=1; failed="$failed $t(corpus)"; continue; }
	mkdir -p "$OUT/crashes/$t" "$OUT/corpus/$t"
	log="$OUT/$t.log"
	start=$SECONDS
	if [ "$mode" = smoke ]; then
		# corpus replay, then a short mutation run starting from it (the
		# new inputs go to a scratch dir that is thrown away)
		scratch=$(mktemp -d "$OUT/smoke.XXXXXX")
		"$OUT/fuzz_$t" -runs=0 -max_len="${MAXLEN[$t]}" \
			-artifact_prefix="$OUT/crashes/$t/" "$corpus" >"$log" 2>&1 &&
		"$OUT/fuzz_$t" -runs=3000 -seed=1 -max_len="${MAXLEN[$t]}" -max_total_time=10 \
			-timeout=10 -rss_limit_mb=2048 -artifact_prefix="$OUT/crashes/$t/" \
			"$scratch" "$corpus" >>"$log" 2>&1
		r=$?
		rm -rf "$scratch"
	else
		"$OUT/fuzz_$t" -max_total_time="$secs" -max_len="${MAXLEN[$t]}" -timeout=10 \
			-rss_limit_mb=2048 -print_final_stats=1 \
			-artifact_prefix="$OUT/crashes/$t/" "$OUT/corpus/$t" "$corpus" >"$log" 2>&1
		r=$?
	fi
	stats=$(grep -E '^#[0-9]+.*(DONE|INITED)' "$log" | tail -n1)
	if [ $r -eq 0 ]; then
		echo "PASS  $t ($((SECONDS - start))s) $stats"
	else
		echo "FAIL  $t (rc=$r, $((SECONDS - start))s) — $log:"
		grep -E 'ERROR|SUMMARY|runtime error|^    #[0-9] ' "$log" | head -n 20 | sed 's/^/    /'
		ls "$OUT/crashes/$t/" 2>/dev/null | sed 's/^/    artifact: /'
		rc=1; failed="$failed $t"
	fi
done
[ -n "$failed" ] && echo "failed:$failed"
exit $rc
