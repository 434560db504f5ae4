#!/bin/sh
# Creates the dedicated system user tapdisks run as by default
# (tap-ctl create switches to it once the image is open and the key read).
set -e
if getent passwd tapdisk >/dev/null; then
	echo "user tapdisk exists"
	exit 0
fi
useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin tapdisk
echo "created system user tapdisk"
