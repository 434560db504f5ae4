/* vdkey: key management for encrypted VBDs (format, keyslots, keyring
 * handoff, header backup, audit). See 'vdkey --help'. This file parses the
 * options and dispatches to the commands (keymgr/vdkey/vdkey.h). */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt/backend/secmem.h"
#include "keymgr/keyslot.h"
#include "keymgr/vdkey/vdkey.h"
#include "keymgr/vdkey/wipe_heap.h"
#include "tapdisk/core/log.h"
#include "tapdisk/registry/registry.h"

static const char *prog = VDKEY_PROG;

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "Usage: vdkey COMMAND SPEC [OPTIONS]\n"
	    "\n"
	    "Key management for encrypted virtual disks. SPEC names the image with or\n"
	    "without the crypt: prefix, e.g. qcow2:/srv/vm1.qcow2 or crypt:aio:/dev/vg/vm2.\n"
	    "\n"
	    "Commands:\n"
	    "  format SPEC --key-file F [--integrity hmac-sha256|none] [--journal-size SIZE]\n"
	    "              [--journal-blocks N] [--integrity-version 1|2] [KDF options] [--force]\n"
	    "                       write a new crypt header: fresh random volume key, keyslot 0;\n"
	    "                       --journal-size: the MAC journal, 1M..256M in 4K steps\n"
	    "                       (default 4M; on rbd, 1/64 of the image within 4M..32M);\n"
	    "                       --journal-blocks N: the same in 4K blocks, instead of\n"
	    "                       --journal-size, 16..65536: down to the format's smallest,\n"
	    "                       for tests and experts (a write that cannot fit a small\n"
	    "                       journal is refused);\n"
	    "                       --integrity-version: the integrity metadata, 2 (default:\n"
	    "                       with the freshness tree) or 1 (as images made before it,\n"
	    "                       without replay protection; for comparisons)\n"
	    "  enroll SPEC --key-file F --new-key-file G [--slot N] [KDF options]\n"
	    "                       add a keyslot for another passphrase\n"
	    "  enroll SPEC --key-file F --tang URL [--tang-thumbprint TP | --tang-trust]\n"
	    "              [--slot N]\n"
	    "                       add a keyslot bound to a Tang server (http://host[:port]):\n"
	    "                       it opens while that server answers; TP pins the server's\n"
	    "                       advertisement signing key (base64url SHA-256 thumbprint,\n"
	    "                       as tang-show-keys prints; clevis's thp). Without TP a\n"
	    "                       terminal is asked, otherwise --tang-trust is required\n"
	    "  enroll SPEC --key-file F --tpm2 [--pcrs LIST] [--tpm2-device DEV] [--slot N]\n"
	    "                       add a keyslot sealed to this machine's TPM 2.0 under a\n"
	    "                       policy on PCRs LIST of the sha256 bank (default 7; e.g.\n"
	    "                       7, 0,7 or 0-3+7): load opens it without a passphrase\n"
	    "                       while those PCRs keep their values\n"
	    "  remove SPEC --key-file F --slot N\n"
	    "                       remove a keyslot (never the last one)\n"
	    "  list SPEC [--json]   keyslots and header parameters (no secret needed)\n"
	    "  load SPEC [--key-file F] [--once] [--user-readable] [--timeout S]\n"
	    "       [--tpm2-device DEV] [--token-only]\n"
	    "                       unlock the volume key into the kernel keyring for tapdisk,\n"
	    "                       bound to this very file (a copy, a renamed file or a\n"
	    "                       snapshot overlay needs its own load); TPM2 and Tang\n"
	    "                       keyslots are tried first, each failure said (a PCR\n"
	    "                       policy that no longer holds, no TPM, a Tang server\n"
	    "                       down), then the passphrase is asked unless --token-only\n"
	    "  unload SPEC          remove it from the keyring\n"
	    "  log SPEC [--json] [--verify | --reset] [--key-file F]\n"
	    "                       the image's key-event log (see 'vdkey log --help')\n"
	    "  accept-rollback SPEC --key-file F\n"
	    "                       accept an image older than the generation this host\n"
	    "                       last saw (a deliberate restore); logged\n"
	    "  audit SPEC [--json] [--scrub]\n"
	    "                       compliance report on the header and keyslots; --scrub\n"
	    "                       also verifies every written block's MAC (key loaded;\n"
	    "                       exit status 1 if any fails; JSON schema: docs/AUDIT.md)\n"
	    "  anchor SPEC --key-file F --tpm2-nv [--nv-index N] [--tpm2-device DEV]\n"
	    "                       keep the image's rollback anchor in a TPM NV counter\n"
	    "                       (defined at the first free index from 0x01800100, or N):\n"
	    "                       every load then refuses an image older than the last\n"
	    "                       load even if /var was restored with it; run again to\n"
	    "                       accept a deliberate restore\n"
	    "  header-backup SPEC FILE    save both header copies to FILE\n"
	    "  header-restore SPEC FILE   write them back (after checking FILE)\n"
	    "  repair SPEC --key-file F   rewrite both header copies from the valid one\n"
	    "  reencrypt SPEC --key-file F [--keep-slot N[:FILE]]... [--drop-slot N]...\n"
	    "           [--keep-only] [--tpm2-device DEV]\n"
	    "                       start rotating the volume key: a new random key, loaded\n"
	    "                       into the keyring and wrapped into every keyslot that is\n"
	    "                       kept; a tapdisk that opens the image then moves every\n"
	    "                       block while it serves, resuming after a crash; at the end\n"
	    "                       the kept slots open the new key and the old key opens\n"
	    "                       nothing. TPM2 and Tang slots are kept through their token\n"
	    "                       (one that cannot release its key now refuses the\n"
	    "                       rotation); another passphrase slot needs --keep-slot\n"
	    "                       N:FILE (FILE as for --key-file) or, on a terminal, a\n"
	    "                       prompt; --drop-slot N drops slot N at the end,\n"
	    "                       --keep-only every slot not given or named by --keep-slot\n"
	    "  reencrypt SPEC --status    how far the rotation is\n"
	    "  reencrypt SPEC --wait [--timeout S]\n"
	    "                       follow it to its end (progress and end go to the key-event\n"
	    "                       log) and make the new key the keyring's\n"
	    "\n"
	    "Secrets come from --key-file FILE ('-' = standard input, bytes used exactly as\n"
	    "they are) or, on a terminal, a no-echo prompt; never from arguments or the\n"
	    "environment.\n"
	    "\n"
	    "KDF options (format, enroll):\n"
	    "  --pbkdf argon2id|pbkdf2|scrypt   default argon2id (t=3, 256 MiB, 4 lanes)\n"
	    "  --pbkdf-iterations N             pbkdf2 iterations / argon2id passes\n"
	    "  --pbkdf-memory KiB               argon2id memory\n"
	    "  --pbkdf-parallel N               argon2id lanes\n"
	    "\n"
	    "KDF budget (every command that runs a keyslot's KDF: load, enroll, remove,\n"
	    "repair, accept-rollback, log --verify/--reset; and format and enroll for the\n"
	    "keyslot they create). A header chooses its keyslots' KDF parameters, so a\n"
	    "hostile one could make an unlock take hours and all the memory; no keyslot\n"
	    "over the budget is tried (its KDF never runs), the others are, cheapest first,\n"
	    "and format/enroll refuse to create one:\n"
	    "  --kdf-max-memory SIZE            memory one keyslot's KDF may use (K/M/G\n"
	    "                                   suffix; default 1G, or half the RAM if less)\n"
	    "  --kdf-max-time SECONDS           work one keyslot may cost (default 16)\n"
	    "  --kdf-max-total-time SECONDS     work all the keyslots tried for one passphrase\n"
	    "                                   may cost (default twice --kdf-max-time)\n"
	    "  --allow-expensive-kdf            no budget (the format's limits still apply)\n"
	    "Work is in reference seconds: 1 GiB passed through the KDF (argon2id t x m,\n"
	    "scrypt 256*N*r*p bytes, pbkdf2 128 bytes per iteration), about a second of one\n"
	    "core. vdkey's default keyslots cost 0.75 (argon2id), 0.25 (scrypt) and 0.07\n"
	    "(pbkdf2); a keyslot costing at most a sixteenth of the total budget (2 s by\n"
	    "default) is always tried, whatever else the header holds.\n"
	    "\n"
	    "The TPM (enroll --tpm2, load, anchor): --tpm2-device DEV, a TCTI as tpm2-tools takes "
	    "it\n"
	    "(device:/dev/tpmrm0, swtpm:host=127.0.0.1,port=2321, tabrmd) or a device path;\n"
	    "without it TPM2TOOLS_TCTI, then TCTI, then libtss2's default (/dev/tpmrm0...).\n"
	    "\n"
	    "Exit status: 0 success, 1 failure (one line on stderr says why), 2 usage.\n");
}

/* SECONDS (a decimal number, more than 0, at most a million) in KDF work
 * units; 0 when it is not one. */
static uint64_t parse_seconds(const char *arg)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(arg, &end);
	if (end == arg || *end || errno || !(v > 0) || v > 1e6)
		return 0;
	v *= (double)TD_KDF_UNITS_PER_SECOND;
	return v < 1 ? 1 : (uint64_t)v;
}

/* The process-wide KDF budget from --kdf-max-memory, --kdf-max-time,
 * --kdf-max-total-time and --allow-expensive-kdf. */
static int budget_from_opts(const struct vdkey_opts *o)
{
	struct td_kdf_budget b = td_kdf_budget_default();

	if (o->allow_expensive_kdf &&
	    (o->kdf_max_memory || o->kdf_max_time || o->kdf_max_total_time)) {
		fprintf(stderr,
			"%s: --allow-expensive-kdf lifts the budget that --kdf-max-* set: "
			"give one or the other\n",
			prog);
		return -EINVAL;
	}
	if (o->allow_expensive_kdf) {
		b = td_kdf_budget_unlimited();
		td_kdf_budget_set(&b);
		return 0;
	}
	if (o->kdf_max_memory && !(b.max_memory = vdkey_parse_size(o->kdf_max_memory))) {
		fprintf(stderr, "%s: bad --kdf-max-memory '%s' (a size, e.g. 512M or 2G)\n", prog,
			o->kdf_max_memory);
		return -EINVAL;
	}
	if (o->kdf_max_time) {
		if (!(b.max_cost = parse_seconds(o->kdf_max_time))) {
			fprintf(stderr, "%s: bad --kdf-max-time '%s' (seconds, e.g. 16 or 0.5)\n",
				prog, o->kdf_max_time);
			return -EINVAL;
		}
		b.max_total_cost = b.max_cost > UINT64_MAX / 2 ? UINT64_MAX : 2 * b.max_cost;
	}
	if (o->kdf_max_total_time && !(b.max_total_cost = parse_seconds(o->kdf_max_total_time))) {
		fprintf(stderr, "%s: bad --kdf-max-total-time '%s' (seconds, e.g. 32)\n", prog,
			o->kdf_max_total_time);
		return -EINVAL;
	}
	td_kdf_budget_set(&b);
	return 0;
}

/* --keep-slot N[:FILE] and --drop-slot N (reencrypt). */
static int slot_opt(struct vdkey_opts *o, bool keep, const char *arg)
{
	char *end = NULL;
	long n = strtol(arg, &end, 10);

	if (end == arg || n < 0 || n >= TD_HDR_KEYSLOTS || (*end && (!keep || *end != ':'))) {
		fprintf(stderr, "vdkey: bad --%s '%s': expected a keyslot number 0..%d%s\n",
			keep ? "keep-slot" : "drop-slot", arg, TD_HDR_KEYSLOTS - 1,
			keep ? ", optionally :FILE" : "");
		return -1;
	}
	if (keep) {
		o->keep_slot[n] = true;
		if (*end == ':') {
			if (!end[1]) {
				fprintf(stderr, "vdkey: bad --keep-slot '%s': empty FILE\n", arg);
				return -1;
			}
			o->keep_file[n] = end + 1;
		}
	} else {
		o->drop_slot[n] = true;
	}
	return 0;
}

int main(int argc, char **argv)
{
	enum {
		O_KEYFILE = 256,
		O_NEWKEY,
		O_INTEG,
		O_JOURNAL,
		O_JBLOCKS,
		O_IVERSION,
		O_PBKDF,
		O_ITER,
		O_MEM,
		O_PAR,
		O_SLOT,
		O_JSON,
		O_SCRUB,
		O_ONCE,
		O_UREAD,
		O_TIMEOUT,
		O_FORCE,
		O_VERIFY,
		O_RESET,
		O_KDF_MEM,
		O_KDF_TIME,
		O_KDF_TOTAL,
		O_KDF_ALLOW,
		O_TANG,
		O_TANG_THP,
		O_TANG_TRUST,
		O_TPM2,
		O_PCRS,
		O_TPM2_DEV,
		O_TOKEN_ONLY,
		O_TPM2_NV,
		O_NV_INDEX,
		O_WAIT,
		O_STATUS,
		O_KEEP_SLOT,
		O_DROP_SLOT,
		O_KEEP_ONLY
	};
	static const struct option longopts[] = {
	    {"key-file", required_argument, NULL, O_KEYFILE},
	    {"new-key-file", required_argument, NULL, O_NEWKEY},
	    {"integrity", required_argument, NULL, O_INTEG},
	    {"journal-size", required_argument, NULL, O_JOURNAL},
	    {"journal-blocks", required_argument, NULL, O_JBLOCKS},
	    {"integrity-version", required_argument, NULL, O_IVERSION},
	    {"pbkdf", required_argument, NULL, O_PBKDF},
	    {"pbkdf-iterations", required_argument, NULL, O_ITER},
	    {"pbkdf-memory", required_argument, NULL, O_MEM},
	    {"pbkdf-parallel", required_argument, NULL, O_PAR},
	    {"slot", required_argument, NULL, O_SLOT},
	    {"json", no_argument, NULL, O_JSON},
	    {"scrub", no_argument, NULL, O_SCRUB},
	    {"once", no_argument, NULL, O_ONCE},
	    {"user-readable", no_argument, NULL, O_UREAD},
	    {"timeout", required_argument, NULL, O_TIMEOUT},
	    {"force", no_argument, NULL, O_FORCE},
	    {"verify", no_argument, NULL, O_VERIFY},
	    {"reset", no_argument, NULL, O_RESET},
	    {"kdf-max-memory", required_argument, NULL, O_KDF_MEM},
	    {"kdf-max-time", required_argument, NULL, O_KDF_TIME},
	    {"kdf-max-total-time", required_argument, NULL, O_KDF_TOTAL},
	    {"allow-expensive-kdf", no_argument, NULL, O_KDF_ALLOW},
	    {"tang", required_argument, NULL, O_TANG},
	    {"tang-thumbprint", required_argument, NULL, O_TANG_THP},
	    {"tang-trust", no_argument, NULL, O_TANG_TRUST},
	    {"tpm2", no_argument, NULL, O_TPM2},
	    {"pcrs", required_argument, NULL, O_PCRS},
	    {"tpm2-device", required_argument, NULL, O_TPM2_DEV},
	    {"token-only", no_argument, NULL, O_TOKEN_ONLY},
	    {"tpm2-nv", no_argument, NULL, O_TPM2_NV},
	    {"nv-index", required_argument, NULL, O_NV_INDEX},
	    {"wait", no_argument, NULL, O_WAIT},
	    {"status", no_argument, NULL, O_STATUS},
	    {"keep-slot", required_argument, NULL, O_KEEP_SLOT},
	    {"drop-slot", required_argument, NULL, O_DROP_SLOT},
	    {"keep-only", no_argument, NULL, O_KEEP_ONLY},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct vdkey_opts o = {.slot = -1};
	const char *cmd, *spec, *file = NULL;
	int c;

	/* all of vdkey's memory locked, before any secret enters it: libtss2,
	 * libcurl and libjose keep copies of keys in their heap blocks, which
	 * free wipes (keymgr/vdkey/wipe_heap.c) but which could otherwise
	 * reach swap while in use. Under a limit vdkey may not lift, it goes
	 * on with its secret buffers locked and says so where a token
	 * keyslot's libraries run (SECURITY.md, "vdkey's heap"). */
	if (td_vdkey_lock_memory(vdkey_lock_msg, sizeof(vdkey_lock_msg)) == 0)
		vdkey_lock_msg[0] = 0;
#ifdef TD_SANITIZED
	vdkey_lock_msg[0] = 0; /* the sanitizer's runtime turns mlock into a no-op anyway */
#endif
	/* before libcrypto allocates anything: its contexts in locked, wiped memory */
	td_secure_crypto_heap();
	td_drivers_set(td_registry());

	td_log_init("vdkey");
	/* libtss2 (TPM2 keyslots) never logs here: at debug or trace level it
	 * prints command buffers, a sealed key among them (keymgr/tpm2.c) */
	setenv("TSS2_LOG", "all+none", 1);
	td_secure_harden_process();
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	cmd = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case O_KEYFILE:
			o.key_file = optarg;
			break;
		case O_NEWKEY:
			o.new_key_file = optarg;
			break;
		case O_INTEG:
			o.integrity = optarg;
			break;
		case O_JOURNAL:
			o.journal_size = optarg;
			break;
		case O_JBLOCKS:
			o.journal_blocks = optarg;
			break;
		case O_IVERSION:
			o.integrity_version = optarg;
			break;
		case O_PBKDF:
			o.pbkdf = optarg;
			break;
		case O_ITER:
			o.iterations = strtol(optarg, NULL, 0);
			break;
		case O_MEM:
			o.memory_kib = strtol(optarg, NULL, 0);
			break;
		case O_PAR:
			o.parallel = strtol(optarg, NULL, 0);
			break;
		case O_SLOT:
			o.slot = strtol(optarg, NULL, 0);
			break;
		case O_JSON:
			o.json = true;
			break;
		case O_SCRUB:
			o.scrub = true;
			break;
		case O_ONCE:
			o.once = true;
			break;
		case O_UREAD:
			o.user_readable = true;
			break;
		case O_TIMEOUT:
			o.timeout_s = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case O_FORCE:
			o.force = true;
			break;
		case O_VERIFY:
			o.verify = true;
			break;
		case O_RESET:
			o.reset = true;
			break;
		case O_KDF_MEM:
			o.kdf_max_memory = optarg;
			break;
		case O_KDF_TIME:
			o.kdf_max_time = optarg;
			break;
		case O_KDF_TOTAL:
			o.kdf_max_total_time = optarg;
			break;
		case O_KDF_ALLOW:
			o.allow_expensive_kdf = true;
			break;
		case O_TANG:
			o.tang = optarg;
			break;
		case O_TANG_THP:
			o.tang_thumbprint = optarg;
			break;
		case O_TANG_TRUST:
			o.tang_trust = true;
			break;
		case O_TPM2:
			o.tpm2 = true;
			break;
		case O_PCRS:
			o.pcrs = optarg;
			break;
		case O_TPM2_DEV:
			o.tpm2_device = optarg;
			break;
		case O_TOKEN_ONLY:
			o.token_only = true;
			break;
		case O_TPM2_NV:
			o.tpm2_nv = true;
			break;
		case O_NV_INDEX:
			o.nv_index = optarg;
			break;
		case O_WAIT:
			o.wait = true;
			break;
		case O_STATUS:
			o.status = true;
			break;
		case O_KEEP_SLOT:
		case O_DROP_SLOT:
			if (slot_opt(&o, c == O_KEEP_SLOT, optarg) < 0)
				return 2;
			break;
		case O_KEEP_ONLY:
			o.keep_only = true;
			break;
		case 'h':
			if (!strcmp(cmd, "log"))
				vdkey_usage_log(stdout);
			else
				usage(stdout);
			return 0;
		default:
			fprintf(stderr, "%s: see vdkey --help\n", prog);
			return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "%s %s: expected SPEC (see vdkey --help)\n", prog, cmd);
		return 2;
	}
	if (budget_from_opts(&o) < 0)
		return 2;
	spec = argv[optind++];
	if (!strcmp(cmd, "header-backup") || !strcmp(cmd, "header-restore")) {
		if (optind >= argc) {
			fprintf(stderr, "%s %s: expected SPEC FILE\n", prog, cmd);
			return 2;
		}
		file = argv[optind++];
	}
	if (optind != argc) {
		fprintf(stderr, "%s %s: unexpected argument '%s'\n", prog, cmd, argv[optind]);
		return 2;
	}
	if (!strcmp(cmd, "format"))
		return vdkey_format(spec, &o);
	if (!strcmp(cmd, "enroll"))
		return vdkey_enroll(spec, &o);
	if (!strcmp(cmd, "reencrypt"))
		return vdkey_reencrypt(spec, &o);
	if (!strcmp(cmd, "remove"))
		return vdkey_remove(spec, &o);
	if (!strcmp(cmd, "list"))
		return vdkey_list(spec, &o, false);
	if (!strcmp(cmd, "audit"))
		return vdkey_list(spec, &o, true);
	if (!strcmp(cmd, "load"))
		return vdkey_load(spec, &o);
	if (!strcmp(cmd, "unload"))
		return vdkey_unload(spec);
	if (!strcmp(cmd, "log")) {
		if (o.reset && (o.verify || o.json)) {
			fprintf(stderr, "%s: log: --reset takes neither --verify nor --json\n",
				prog);
			return 2;
		}
		return vdkey_log(spec, &o);
	}
	if (!strcmp(cmd, "accept-rollback"))
		return vdkey_accept_rollback(spec, &o);
	if (!strcmp(cmd, "header-backup"))
		return vdkey_header_backup(spec, file);
	if (!strcmp(cmd, "header-restore"))
		return vdkey_header_restore(spec, file);
	if (!strcmp(cmd, "repair"))
		return vdkey_repair(spec, &o);
	if (!strcmp(cmd, "anchor"))
		return vdkey_anchor(spec, &o);
	fprintf(stderr, "%s: unknown command '%s' (see vdkey --help)\n", prog, cmd);
	return 2;
}
