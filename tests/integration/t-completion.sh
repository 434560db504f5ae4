#!/bin/bash
# bash completion of tap-ctl and vdkey (completion/): commands, options,
# option values, SPECs (drivers, then files) and the selectors of running
# tapdisks (-p PIDs, -m minors, -s sockets, from 'tap-ctl list --json').
. "$TD_SRC/tests/lib/common.sh"
need truncate python3

. "$TD_SRC/completion/tap-ctl"
. "$TD_SRC/completion/vdkey"
complete -p tap-ctl | grep -q _tap_ctl || fail "tap-ctl has no completion"
complete -p vdkey | grep -q _vdkey || fail "vdkey has no completion"

# comp LINE -- what the completion offers for LINE, the cursor at its end,
# with the words split as bash splits them (COMP_WORDBREAKS, ':' included)
comp() {
	local line=$1 fn
	COMP_LINE=$line
	COMP_POINT=${#line}
	COMP_WORDBREAKS=${TEST_WORDBREAKS:-$' \t\n"\'><=;|&(:'}
	# bash's own split: words at blanks, and each wordbreak character
	# other than a blank as a word of its own
	COMP_WORDS=()
	local w="" c i
	for ((i = 0; i < ${#line}; i++)); do
		c=${line:i:1}
		if [[ $c == [[:blank:]] ]]; then
			[[ -n $w ]] && COMP_WORDS+=("$w")
			w=""
		elif [[ $c != [[:blank:]] && $COMP_WORDBREAKS == *"$c"* ]]; then
			[[ -n $w ]] && COMP_WORDS+=("$w")
			COMP_WORDS+=("$c")
			w=""
		else
			w+=$c
		fi
	done
	if [[ -n $w ]]; then
		COMP_WORDS+=("$w")
	elif [[ $line == *[[:blank:]] ]]; then
		COMP_WORDS+=("")
	fi
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	case ${COMP_WORDS[0]} in
	tap-ctl) fn=_tap_ctl ;;
	vdkey) fn=_vdkey ;;
	esac
	$fn "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]:-}"
	printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//'
}

# expect LINE WANT -- the offer is exactly WANT (sorted, space separated)
expect() {
	local got
	got=$(comp "$1")
	[ "$got" = "$2" ] || fail "completing '$1': got '$got', want '$2'"
	echo "   '$1' -> $got"
}
# offers LINE WORD... -- the offer includes every WORD
offers() {
	local got line=$1 w
	shift
	got=" $(comp "$line") "
	for w in "$@"; do
		[[ $got == *" $w "* ]] || fail "completing '$line': '$w' not in '$got'"
	done
	echo "   '$line' -> ...$*"
}

info "tap-ctl: commands and options"
expect "tap-ctl " "--help create destroy list pause resize snapshot stats unpause"
expect "tap-ctl s" "snapshot stats"
expect "tap-ctl un" "unpause"
expect "tap-ctl list --" "--help --json"
expect "tap-ctl create --r" "--readonly"
offers "tap-ctl create -" -a -s -r -t -u --user --ceph-conf --ceph-id
expect "tap-ctl unpause -" "--help -a -m -p -s"

info "tap-ctl: SPECs, drivers first, then files (with and without ':' as a word break)"
mkdir -p "$T/imgs" && : >"$T/imgs/vm1.qcow2" && : >"$T/imgs/vm2.img"
expect "tap-ctl create -a cr" "crypt:"
expect "tap-ctl create -a crypt:q" "qcow2: qcow:"
expect "tap-ctl create -a crypt:qcow2:$T/imgs/vm" "$T/imgs/vm1.qcow2 $T/imgs/vm2.img"
TEST_WORDBREAKS=$' \t\n' expect "tap-ctl create -a crypt:q" "crypt:qcow2: crypt:qcow:"
TEST_WORDBREAKS=$' \t\n' expect "tap-ctl create -a aio:$T/imgs/vm2" "aio:$T/imgs/vm2.img"

info "tap-ctl: selectors of the running tapdisks"
truncate -s 64M "$T/disk.img"
uri=$(tap-ctl create -a "aio:$T/disk.img") || fail "tap-ctl create"
sock=${uri#nbd+unix:///?socket=}
pid=$(tap-ctl list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["pid"])')
minor=$(tap-ctl list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["minor"])')
expect "tap-ctl stats -p " "$pid"
expect "tap-ctl pause -m " "$minor"
expect "tap-ctl destroy -s " "$sock"
expect "tap-ctl stats -p $pid --j" "--json"
tap-ctl destroy -s "$sock" || fail "tap-ctl destroy"
expect "tap-ctl stats -p " ""

info "vdkey: commands, options, values"
expect "vdkey " "--help accept-rollback anchor audit enroll format header-backup header-restore list load log reencrypt remove repair unload"
expect "vdkey l" "list load log"
expect "vdkey load qcow2:$T/imgs/vm1.qcow2 --" "--allow-expensive-kdf --help --kdf-max-memory --kdf-max-time --kdf-max-total-time --key-file --once --timeout --token-only --tpm2-device --user-readable"
expect "vdkey log x --v" "--verify"
expect "vdkey format aio:$T/disk.img --integrity " "hmac-sha256 none"
expect "vdkey format aio:$T/disk.img --pbkdf a" "argon2id"
offers "vdkey format aio:$T/disk.img --" --key-file --journal-size --force --pbkdf-memory --kdf-max-time
offers "vdkey enroll aio:$T/disk.img --" --tang --tang-thumbprint --tang-trust --new-key-file
offers "vdkey reencrypt aio:$T/disk.img --" --key-file --keep-slot --drop-slot --keep-only --status --wait
expect "vdkey list a" "aio:"
expect "vdkey audit qcow2:$T/imgs/vm1" "$T/imgs/vm1.qcow2"
expect "vdkey load qcow2:$T/imgs/vm1.qcow2 --key-file $T/imgs/vm2" "$T/imgs/vm2.img"
expect "vdkey header-backup qcow2:$T/imgs/vm1.qcow2 $T/imgs/vm1" "$T/imgs/vm1.qcow2"
echo ok
