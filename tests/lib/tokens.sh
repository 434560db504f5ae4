# The machines a token keyslot talks to, for integration tests: a software
# TPM (swtpm) and a tang server, each on free ports of 127.0.0.1, stopped
# with the test. Source after tests/lib/common.sh:
#   . "$TD_SRC/tests/lib/tokens.sh"

# free_port: a TCP port of 127.0.0.1 free now
free_port() {
	python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# free_port_pair: two free ports P, P+1 (swtpm's server and control)
free_port_pair() {
	python3 - <<'PY'
import random, socket
for _ in range(200):
    p = random.randrange(20000, 60000, 2)
    try:
        for q in (p, p + 1):
            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
    except OSError:
        continue
    print(p)
    break
PY
}

# start_swtpm NAME: a fresh TPM with its state in $T/NAME, answering on
# 127.0.0.1; sets PORT (server; PORT+1 is control) and TCTI_<NAME> (the
# TCTI string tpm2-tools and vdkey take)
start_swtpm() {
	local dir=$T/$1 i
	mkdir -p "$dir"
	PORT=$(free_port_pair)
	[ -n "$PORT" ] || fail "no free port pair for swtpm"
	swtpm socket --tpm2 --server type=tcp,port="$PORT",bindaddr=127.0.0.1 \
		--ctrl type=tcp,port=$((PORT + 1)),bindaddr=127.0.0.1 --tpmstate dir="$dir" \
		--flags startup-clear,not-need-init >"$dir/log" 2>&1 &
	_td_pids="$_td_pids $!"
	eval "TCTI_$1=swtpm:host=127.0.0.1,port=$PORT"
	for i in $(seq 1 100); do
		tpm2_pcrread -T "swtpm:host=127.0.0.1,port=$PORT" sha256:16 >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	fail "swtpm $1 did not start: $(cat "$dir/log")"
}

# tang_start NAME PORT: serves the keys in $T/NAME on 127.0.0.1:PORT
# (tangd behind socat); sets PID_<NAME>. tang_stop NAME stops it.
TANGD=${TANGD:-/usr/libexec/tangd}
tang_start() {
	local name=$1 port=$2 i
	socat "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr" \
		EXEC:"$TANGD $T/$name" 2>>"$T/$name.log" &
	eval "PID_$name=$!"
	_td_pids="$_td_pids $!"
	for i in $(seq 1 100); do
		curl -sf "http://127.0.0.1:$port/adv" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	fail "tang $name did not start on port $port"
}
tang_stop() {
	local p
	p=$(eval echo "\$PID_$1")
	kill "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	return 0
}

# tang_thp PORT: the SHA-256 thumbprint of a server's advertisement signing
# key (as tang-show-keys prints it, without needing the server on port 80)
tang_thp() {
	curl -sf "http://127.0.0.1:$1/adv" | jose fmt -j- -g payload -y -o- |
		jose jwk use -i- -r -u verify -o- | jose jwk thp -i- -a S256
}
