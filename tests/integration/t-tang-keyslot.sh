#!/bin/bash
# Tang keyslots (docs/FORMAT.md, "Tang token") against real tang servers
# (Debian package tang: tangd-keygen, tangd behind socat) on 127.0.0.1:
# enroll pinned (a wrong or missing pin refused, a terminal asked), load without a passphrase
# and data read back through tapdisk, server down -> a clear refusal
# (--token-only: no prompt), back up -> works, key rotation (old key still
# recovers; deleted -> "does not have key"), a token edited to point at
# another server (even one holding the same keys) fails the wrap's AAD,
# audit --json reports the kind and URL, and clevis interoperability: the
# same server serves clevis, and our ECMR recovery of a clevis JWE's point
# decrypts that JWE with jose.
. "$TD_SRC/tests/lib/common.sh"
need keyctl socat jose clevis qemu-img nbdcopy python3 curl script
TANGD=/usr/libexec/tangd
KEYGEN=/usr/libexec/tangd-keygen
ROTATE=/usr/libexec/tangd-rotate-keys
[ -x "$TANGD" ] && [ -x "$KEYGEN" ] || skip "tang is not installed (Debian package tang)"
FORGE="python3 $TD_SRC/tests/lib/hdrforge.py"

. "$TD_SRC/tests/lib/tokens.sh"

# two 5-digit ports (the URL-edit test swaps one for the other in place)
PA=$(free_port)
PB=$(free_port)
while [ ${#PA} -ne 5 ] || [ ${#PB} -ne 5 ] || [ "$PA" = "$PB" ]; do PA=$(free_port); PB=$(free_port); done
mkdir -p "$T/tangA" "$T/tangC"
"$KEYGEN" "$T/tangA" 2>/dev/null || fail "tangd-keygen"
"$KEYGEN" "$T/tangC" 2>/dev/null || fail "tangd-keygen"
tang_start tangA "$PA"
URL="http://127.0.0.1:$PA"
TP=$(tang_thp "$PA")
[ ${#TP} -eq 43 ] || fail "thumbprint of tang A: '$TP'"

Q=$T/disk.qcow2
KEY=$T/pass
SOCK=$T/nbd.sock
URI=$(uri_of "$SOCK")
printf 'tang test %s' "$RANDOM" >"$KEY"
qemu-img create -q -f qcow2 "$Q" 64M
vdkey format "qcow2:$Q" --key-file "$KEY" --pbkdf pbkdf2 --pbkdf-iterations 1000 >/dev/null ||
	fail "format"
td_on_exit "vdkey unload qcow2:$Q >/dev/null 2>&1"

info "enroll: a wrong thumbprint, or none without a terminal, is refused"
out=$(vdkey enroll "qcow2:$Q" --key-file "$KEY" --tang "$URL" \
	--tang-thumbprint AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA </dev/null 2>&1) &&
	fail "enroll with a wrong thumbprint succeeded"
echo "$out" | grep -q "has thumbprint AAAA.*refusing" || fail "message: $out"
out=$(vdkey enroll "qcow2:$Q" --key-file "$KEY" --tang "$URL" </dev/null 2>&1) &&
	fail "enroll without a pin succeeded"
echo "$out" | grep -q -- "--tang-trust" || fail "message: $out"
out=$(vdkey enroll "qcow2:$Q" --key-file "$KEY" --tang "https://127.0.0.1:$PA" --tang-trust 2>&1) &&
	fail "https accepted"
echo "$out" | grep -q "http://" || fail "message: $out"
vdkey list "qcow2:$Q" | grep -q "1 of 16 active" || fail "a refused enroll added a slot"

info "enroll without a pin on a terminal: the thumbprint is shown and asked (script(1) pty)"
truncate -s 16M "$T/tty.img"
vdkey format "aio:$T/tty.img" --key-file "$KEY" --pbkdf pbkdf2 --pbkdf-iterations 1000 >/dev/null
out=$( (sleep 1; echo n) | timeout 30 script -qec \
	"vdkey enroll aio:$T/tty.img --key-file $KEY --tang $URL" /dev/null 2>&1) &&
	fail "enroll went on after 'n'"
echo "$out" | grep -q "$TP" || fail "thumbprint not shown: $out"
out=$( (sleep 1; echo y) | timeout 30 script -qec \
	"vdkey enroll aio:$T/tty.img --key-file $KEY --tang $URL" /dev/null 2>&1) ||
	fail "enroll after 'y': $out"
echo "$out" | grep -q "added keyslot 1 (tang $URL, signing key $TP)" || fail "enroll said: $out"

info "enroll pinned, audit --json reports kind and URL"
out=$(vdkey enroll "qcow2:$Q" --key-file "$KEY" --tang "$URL" --tang-thumbprint "$TP" </dev/null) ||
	fail "enroll"
echo "$out" | grep -q "added keyslot 1 (tang $URL" || fail "enroll said: $out"
vdkey audit "qcow2:$Q" --json | URL=$URL TP=$TP python3 -c '
import json, os, sys
j = json.load(sys.stdin)
s = {k["slot"]: k for k in j["keyslots"]}
assert s[0]["kind"] == "passphrase", s
assert s[1]["kind"] == "tang" and s[1]["kdf"]["type"] == "tang", s
assert s[1]["tang"]["url"] == os.environ["URL"], s
assert s[1]["tang"]["thumbprint"] == os.environ["TP"], s' || fail "audit --json"
vdkey list "qcow2:$Q" | grep -q "1: tang token $URL (signer $TP)" || fail "list text"

info "load without a passphrase while tang answers; data through tapdisk reads back"
out=$(vdkey load "qcow2:$Q" </dev/null) || fail "tang load"
echo "$out" | grep -q "keyslot 1" || fail "load said: $out"
head -c 8M /dev/urandom >"$T/data"
td_serve "crypt:qcow2:$Q" "$SOCK"
nbdcopy "$T/data" "$URI" || fail "write through tapdisk"
td_stop "$TD_PID" || fail "tapdisk exit"
vdkey unload "qcow2:$Q" >/dev/null
vdkey load "qcow2:$Q" </dev/null >/dev/null || fail "second tang load"
td_serve "crypt:qcow2:$Q" "$SOCK"
nbdcopy "$URI" "$T/back" || fail "read through tapdisk"
td_stop "$TD_PID" || fail "tapdisk exit"
cmp <(head -c 8M "$T/back") "$T/data" || fail "data read back differs"
vdkey unload "qcow2:$Q" >/dev/null

info "tang down: load refuses and says why; --token-only asks nothing"
tang_stop tangA
out=$(timeout 60 vdkey load "qcow2:$Q" --token-only 2>&1) && fail "loaded with tang down"
echo "$out" | grep -q "keyslot 1 (tang): Tang server $URL/rec/.* is down or unreachable" ||
	fail "message: $out"
echo "$out" | grep -q -- "not asking for a passphrase (--token-only)" || fail "message: $out"
echo "$out" | grep -qi "passphrase:" && fail "prompted: $out"
out=$(timeout 60 vdkey load "qcow2:$Q" </dev/null 2>&1) && fail "loaded with tang down"
echo "$out" | grep -q "falling back to the passphrase" || fail "no fallback: $out"
vdkey load "qcow2:$Q" --key-file "$KEY" >/dev/null || fail "the passphrase still opens it"
vdkey unload "qcow2:$Q" >/dev/null

info "tang back: load works again"
tang_start tangA "$PA"
vdkey load "qcow2:$Q" --token-only </dev/null | grep -q "keyslot 1" || fail "load after restart"
vdkey unload "qcow2:$Q" >/dev/null

info "key rotation: the old (hidden) key still recovers; deleted, it does not"
old_adv=$(curl -sf "$URL/adv")
"$ROTATE" -d "$T/tangA" >/dev/null 2>&1 || fail "tangd-rotate-keys"
ls -a "$T/tangA" | grep -q '^\..*\.jwk$' || fail "rotation left no hidden keys"
[ "$(curl -sf "$URL/adv")" != "$old_adv" ] || fail "the advertisement did not change"
vdkey load "qcow2:$Q" --token-only </dev/null | grep -q "keyslot 1" || fail "load after rotation"
vdkey unload "qcow2:$Q" >/dev/null
mkdir "$T/hidden"
mv "$T"/tangA/.*.jwk "$T/hidden/"
out=$(vdkey load "qcow2:$Q" --token-only </dev/null 2>&1) && fail "loaded with the key deleted"
echo "$out" | grep -q "does not have key" || fail "message: $out"
mv "$T"/hidden/.*.jwk "$T/tangA/"
vdkey load "qcow2:$Q" --token-only </dev/null >/dev/null || fail "load with the key back"
vdkey unload "qcow2:$Q" >/dev/null
info "re-enroll moves to the new key (then the hidden ones can go)"
TP2=$(tang_thp "$PA")
[ "$TP2" != "$TP" ] || fail "the signing key did not rotate"
vdkey enroll "qcow2:$Q" --key-file "$KEY" --tang "$URL" --tang-thumbprint "$TP2" </dev/null |
	grep -q "added keyslot 2" || fail "re-enroll"
vdkey remove "qcow2:$Q" --key-file "$KEY" --slot 1 >/dev/null || fail "remove the old slot"
rm -f "$T"/tangA/.*.jwk
vdkey load "qcow2:$Q" --token-only </dev/null | grep -q "keyslot 2" || fail "load with the new key"
vdkey unload "qcow2:$Q" >/dev/null

info "a token edited to name another server fails, even one holding the same keys"
# tang B serves a copy of A's keys on another port; the slot's AAD binds
# the token, so the (correct) recovery through B must not open it
cp -a "$T/tangA" "$T/tangB"
tang_start tangB "$PB"
RAW=$T/raw.img
truncate -s 16M "$RAW"
vdkey format "aio:$RAW" --key-file "$KEY" --pbkdf pbkdf2 --pbkdf-iterations 1000 >/dev/null
td_on_exit "vdkey unload aio:$RAW >/dev/null 2>&1"
vdkey enroll "aio:$RAW" --key-file "$KEY" --tang "$URL" --tang-thumbprint "$TP2" </dev/null |
	grep -q "added keyslot 1" || fail "enroll aio"
# the token of slot 1: copy offset 5120 + 640, payload at +8, URL at +4;
# "http://127.0.0.1:" is 17 bytes, then the 5 port digits
hex=$(printf '%s' "$PB" | od -An -tx1 | tr -d ' \n')
$FORGE "$RAW" "raw:$((5120 + 640 + 8 + 4 + 17))" "$hex" || fail "hdrforge"
vdkey audit "aio:$RAW" --json | grep -q "127.0.0.1:$PB" || fail "the edit did not take"
out=$(vdkey load "aio:$RAW" --token-only </dev/null 2>&1) && fail "the edited token opened the slot"
echo "$out" | grep -q "does not open this keyslot" || fail "message: $out"
tang_stop tangB
# pointed at a server with other keys (C): the key is not there
cp -a "$T/tangC" "$T/tangC2"
tang_start tangC2 "$PB"
out=$(vdkey load "aio:$RAW" --token-only </dev/null 2>&1) && fail "another server opened the slot"
echo "$out" | grep -q "does not have key" || fail "message: $out"
tang_stop tangC2

info "a hostile server on the token's address: every bad answer refused, with why"
# slot 1 of $RAW names port $PB now; a fake tang answers /rec there
cat >"$T/fake.py" <<'PY'
import http.server, json, sys, time
mode, port = sys.argv[1], int(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        req = json.loads(self.rfile.read(n))
        if mode == "hang":
            time.sleep(30)
        body = {"junk": b"not json {", "echo": json.dumps(req).encode(),
                "curve": json.dumps(dict(req, crv="P-256")).encode(),
                "big": b"[" * (1 << 20), "e500": b""}[mode]
        self.send_response(500 if mode == "e500" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
PY
for mode in junk echo curve big e500; do
	python3 "$T/fake.py" "$mode" "$PB" &
	fpid=$!
	_td_pids="$_td_pids $fpid"
	for i in $(seq 1 50); do
		curl -s -o /dev/null "http://127.0.0.1:$PB/" && break
		sleep 0.1
	done
	out=$(vdkey load "aio:$RAW" --token-only </dev/null 2>&1) && fail "fake tang ($mode) opened it"
	case $mode in
	junk | curve) echo "$out" | grep -q "bad answer from the Tang server.*not a P-521 point" ;;
	echo) echo "$out" | grep -q "does not open this keyslot" ;;
	big) echo "$out" | grep -q "larger than 65536 bytes" ;;
	e500) echo "$out" | grep -q "bad answer from the Tang server at .*HTTP 500" ;;
	esac || fail "fake tang ($mode): $out"
	kill "$fpid"
	wait "$fpid" 2>/dev/null
done

info "clevis: the same server serves clevis; our recovery of a clevis JWE's point decrypts it"
printf 'clevis interop %s' "$RANDOM" >"$T/secret"
clevis encrypt tang "{\"url\":\"$URL\",\"thp\":\"$TP2\"}" <"$T/secret" >"$T/c.jwe" ||
	fail "clevis encrypt tang"
clevis decrypt <"$T/c.jwe" | cmp - "$T/secret" || fail "clevis decrypt"
hdr=$(cut -d. -f1 "$T/c.jwe" | jose b64 dec -i-)
kid=$(jose fmt -j "$hdr" -g kid -u-)
crv=$(jose fmt -j "$hdr" -g epk -g crv -u-)
cx=$(jose fmt -j "$hdr" -g epk -g x -u-)
cy=$(jose fmt -j "$hdr" -g epk -g y -u-)
# clevis keeps the advertisement's key set; S is its exchange key
# (one key: jose jwk use prints it alone)
srv=$(jose fmt -j "$hdr" -g clevis -g tang -g adv -o- | jose jwk use -i- -r -u deriveKey -o-)
[ "$(jose jwk thp -i- -a S256 <<<"$srv")" = "$kid" ] || fail "the clevis JWE's kid is not S"
sx=$(jose fmt -j "$srv" -g x -u-)
sy=$(jose fmt -j "$srv" -g y -u-)
"$TD_TOOLS/tang_point" "$URL" "$kid" "$crv" "$sx" "$sy" "$cx" "$cy" >"$T/K.jwk" ||
	fail "our recovery of the clevis point"
jose jwe dec -k "$T/K.jwk" -i "$T/c.jwe" | cmp - "$T/secret" ||
	fail "the point we recovered does not decrypt the clevis JWE"
tang_stop tangA
out=$("$TD_TOOLS/tang_point" "$URL" "$kid" "$crv" "$sx" "$sy" "$cx" "$cy" 2>&1) &&
	fail "recovered with the server down"
echo ok
