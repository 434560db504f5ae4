#!/bin/sh
# One-time host set-up for tapdisks, as root:
#  - reserves the range of uids that VBDs run as, one uid per VBD
#    (tapdisk/daemon/uidalloc.h), in /etc/tdcrypt/tapdisk.conf (uid-range), after
#    checking that no account and no group uses an id inside it;
#  - creates the system user 'tapdisk', for hosts that want one fixed uid
#    for every tapdisk (tap-ctl create --user tapdisk). The default, a uid
#    of its own per VBD, needs no account at all.
# Usage: scripts/setup-user.sh [FIRST-LAST]   (default 1895825408-1895890943)
# TDCRYPT_CONF names another settings file (tests).
set -e
RANGE=${1:-1895825408-1895890943}
CONF=${TDCRYPT_CONF:-/etc/tdcrypt/tapdisk.conf}
first=${RANGE%-*}
last=${RANGE#*-}
case "$first$last" in *[!0-9]*|"") echo "setup-user: bad range '$RANGE' (FIRST-LAST)" >&2; exit 2 ;; esac
if [ "$first" -le 0 ] || [ "$last" -lt "$first" ] || [ "$last" -ge 2147483647 ]; then
	echo "setup-user: bad range $RANGE (0 < FIRST <= LAST < 2^31-1)" >&2
	exit 2
fi
[ "$(id -u)" = 0 ] || { echo "setup-user: run as root" >&2; exit 1; }

used=$( (getent passwd; getent group) | awk -F: -v a="$first" -v b="$last" \
	'$3 >= a && $3 <= b {print $1 " (" $3 ")"}')
if [ -n "$used" ]; then
	echo "setup-user: ids in $RANGE are in use: $used; choose another range" >&2
	exit 1
fi

mkdir -p "$(dirname "$CONF")"
if [ -f "$CONF" ] && grep -q '^[[:space:]]*uid-range' "$CONF"; then
	echo "$CONF already reserves a range: $(grep '^[[:space:]]*uid-range' "$CONF")"
else
	if [ ! -f "$CONF" ]; then
		printf '# tapdisk host settings (tapdisk/block/hostconf.h; README, "Host set-up")\n' >"$CONF"
	fi
	printf 'uid-range = %s-%s\n' "$first" "$last" >>"$CONF"
	echo "reserved uids $first-$last for VBDs in $CONF"
fi
chown root:root "$CONF"
chmod 0644 "$CONF"

if getent passwd tapdisk >/dev/null; then
	echo "user tapdisk exists"
else
	useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin tapdisk
	echo "created system user tapdisk"
fi
