#!/bin/bash
# The man pages (man/*.scd, generated with scdoc): each renders without a
# warning, lexgrog finds its NAME line, and every command and --long-option
# that a program's --help (and each command's --help) mentions is in the
# program's page; a missing one is named. tdcrypt(5) covers the format's
# parts and the key lifecycle.
. "$TD_SRC/tests/lib/common.sh"
need man lexgrog scdoc python3
M=$TD_SRC/$BUILD/man

for p in tapdisk.8 tap-ctl.8 vdkey.8 tapback.8 tdcrypt.5; do
	[ -f "$M/$p" ] || fail "$M/$p was not generated (make man)"
	[ "$M/$p" -nt "$TD_SRC/man/$p.scd" ] || [ ! "$TD_SRC/man/$p.scd" -nt "$M/$p" ] ||
		fail "$M/$p is older than its source"
	w=$(MANWIDTH=80 man --warnings -l "$M/$p" 2>&1 >/dev/null)
	[ -z "$w" ] || fail "man --warnings $p: $w"
	w=$(LC_ALL=C MANWIDTH=80 man --warnings -l "$M/$p" 2>&1 >/dev/null)
	[ -z "$w" ] || fail "man --warnings $p (C locale): $w"
	lexgrog "$M/$p" | grep -q ": \"${p%.*} - " || fail "lexgrog does not see the NAME of $p: $(lexgrog "$M/$p")"
	echo "   $p: renders without warnings; $(lexgrog "$M/$p" | cut -d'"' -f2)"
done

# text PAGE -- the rendered page, plain ASCII, one long line per paragraph
text() { LC_ALL=C MANWIDTH=1000 man -l "$M/$1" 2>/dev/null | col -bx; }

# words -- the commands and long options a --help text mentions: --long
# options anywhere, and the first word of every indented line of a
# "Commands:" block
words() {
	python3 -c '
import re, sys
text = sys.stdin.read()
found = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))
block = False
for line in text.splitlines():
    if re.match(r"^\S.*:\s*$", line):
        block = line.lower().startswith("commands")
        continue
    if block:
        m = re.match(r"^  ([a-z][a-z0-9-]+)\b", line)
        if m:
            found.add(m.group(1))
        elif line.strip() and not line.startswith(" "):
            block = False
print("\n".join(sorted(found)))'
}

# check PROGRAM PAGE HELP... -- every word of the help texts is on the page
check() {
	local prog=$1 page=$2 missing="" w n=0
	shift 2
	text "$page" >"$T/page.txt"
	printf '%s\n' "$@" | words >"$T/words"
	while read -r w; do
		n=$((n + 1))
		# a whole option (--pbkdf is not --pbkdf-memory); a command as a
		# word of the page and in bold in its source (*list*, not "a list")
		grep -qE -- "(^|[^a-z-])$w([^a-z-]|\$)" "$T/page.txt" || { missing="$missing $w"; continue; }
		[[ $w == --* ]] || grep -qF -- "*$w*" "$TD_SRC/man/$page.scd" || missing="$missing $w"
	done <"$T/words"
	[ "$n" -gt 3 ] || fail "no options found in the help of $prog"
	[ -z "$missing" ] || fail "$page lacks what '$prog --help' mentions:$missing"
	echo "   $page: all $n commands and options of $prog's help: $(tr '\n' ' ' <"$T/words")"
}

info "every command and option of the help texts is in the man pages"
h_tapdisk=$(tapdisk --help)
for c in serve drivers; do echo "$h_tapdisk" | grep -q "tapdisk $c" || fail "tapdisk --help lacks $c"; done
check tapdisk tapdisk.8 "$h_tapdisk" "Commands:
  serve
  drivers"
helps=("$(tap-ctl --help)")
for c in create list destroy pause unpause stats snapshot qos; do helps+=("$(tap-ctl "$c" --help)"); done
check tap-ctl tap-ctl.8 "${helps[@]}"
helps=("$(vdkey --help)" "$(vdkey log --help)")
for c in format enroll remove list load unload accept-rollback audit header-backup header-restore repair; do
	helps+=("$(vdkey "$c" --help)")
done
check vdkey vdkey.8 "${helps[@]}"
check tapback tapback.8 "$("$TD_SRC/$BUILD/xen/tapback" --help)"

info "short options of tapdisk and tap-ctl are in their pages"
for o in -s -r -m -e -u -v -h; do grep -qF -- "$o," <(text tapdisk.8) || fail "tapdisk.8 lacks $o"; done
for o in -a -s -p -m -r -t -u; do grep -qE -- "(^| )$o( |,)" <(text tap-ctl.8) || fail "tap-ctl.8 lacks $o"; done

info "a missing option is named"
check_out=$( (check tap-ctl tapdisk.8 "$(tap-ctl --help)") 2>&1) && fail "tapdisk.8 passed as tap-ctl's page"
echo "$check_out" | grep -q "lacks what 'tap-ctl --help' mentions:.*snapshot" || fail "message: $check_out"
echo "   $check_out"

info "tdcrypt(5) covers the format and the key lifecycle"
text tdcrypt.5 >"$T/t5"
for s in "CRYPT HEADER" KEYSLOTS "INTEGRITY METADATA" "MAC journal" "Freshness tree" Superblocks \
	"KEY LIFECYCLE" "docs/FORMAT.md" "SECURITY.md" "tapdisk.conf" "uid-range" "backing-dirs" "qos-host-iops" "qos-dir"; do
	grep -qF "$s" "$T/t5" || fail "tdcrypt.5 lacks '$s'"
done
echo ok
