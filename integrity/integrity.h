/* The integrity layer's public face: what the crypt layer hands it when it
 * inserts it below itself, its tuning options, the format and inspection
 * steps vdkey runs, and (test builds only) the switches that break it on
 * purpose for the crash simulator. */
#ifndef TD_INTEGRITY_INTEGRITY_H
#define TD_INTEGRITY_INTEGRITY_H

#include <stddef.h>
#include <stdint.h>

#include "integrity/format.h"
#include "tapdisk/block/driver.h"

/* Tuning of one open layer (spec options, see ti_tuning_parse). 0 in a
 * field means its default. */
struct ti_tuning {
	/* journal writes in flight before a half-filled journal block waits
	 * for one of them: 1 (default, pure group commit) .. 4 */
	unsigned journal_partial;
	/* bytes of tag-table pages cached per VBD (default 32 MiB) */
	uint64_t tag_cache;
#ifdef TD_TEST_BUILD
	/* test builds only, test-switch-stall=1: the online switch of a
	 * volume-key rotation stops for good after its rekey checkpoint,
	 * before the header commit (a kill -9 there is the window's test) */
	bool test_switch_stall;
#endif
};

#define TI_JOURNAL_PARTIAL_DEFAULT 1
#define TI_JOURNAL_PARTIAL_MAX 4
#define TI_TAG_CACHE_DEFAULT (32ull << 20)
#define TI_TAG_CACHE_MIN (1ull << 20)
#define TI_TAG_CACHE_MAX (4ull << 30)

/* The options of a spec layer (NULL: none), comma separated:
 * journal-partial=N, tag-cache=SIZE (K, M or G suffix), over what t holds.
 * 0, or -EINVAL with a message naming `who` for a bad or unknown one. */
int ti_tuning_parse(const char *opts, struct ti_tuning *t, const char *who, char *err,
		    size_t errlen);

/* Passed through td_chain_insert_below(..., arg). The keys are copied. */
struct ti_open_arg {
	struct ti_params params;
	uint8_t uuid[16];
	const uint8_t *mac_key;	 /* 32 bytes */
	const uint8_t *tree_key; /* 32 bytes (v2 parameters) */
	struct ti_tuning tuning;
	/* A volume-key rotation under way (docs/FORMAT.md, "Volume-key
	 * rotation with the integrity layer"): the new key's mac and tree
	 * subkeys (NULL: none), and the tag boundary (blocks below it are
	 * tagged under new_mac_key). */
	const uint8_t *new_mac_key;
	const uint8_t *new_tree_key;
	uint64_t tag_boundary;
};

/* Volume-key rotation, called by the crypt layer on the integrity layer
 * below it (l). Loop thread. Blocks below t are tagged and verified under
 * the new mac subkey from now on; the caller holds every block whose side
 * changes locked exclusively. */
void ti_reenc_set_boundary(struct td_layer *l, uint64_t t);
/* Open paths only (synchronous I/O): every block is the new key's (the
 * boundary is at the end). Checkpoints under the old keys, then writes a
 * checkpoint whose tree and superblock are under the new key's subkeys
 * (the tag and tree pages into the slots the current tree does not use),
 * and uses only the new keys from then on. The trusted generation is NOT
 * advanced for that checkpoint: ti_reenc_gen_commit does it once the
 * header that names the new key is durable. */
int ti_reenc_rekey_sync(struct td_layer *l, char *err, size_t errlen);
void ti_reenc_gen_commit(struct td_layer *l);
/* The same switch while the VBD serves (loop thread, asynchronous): the
 * caller holds every block locked exclusively, so no guest read or write
 * is in the layer (guest flushes may be). Checkpoints under the old keys
 * while anything is pending, loads every tag page (v2), then a rekey
 * checkpoint whose drain switches the keys, as above; done(opaque, err)
 * runs from the loop once its superblock is durable (or it failed). From
 * the key switch until ti_reenc_switch_commit no other checkpoint starts
 * and the trusted generation stays where it is. Returns -EINVAL (nothing
 * done) when no finished rotation is there to switch. */
int ti_reenc_switch(struct td_layer *l, void (*done)(void *opaque, int err), void *opaque);
/* The header that names the new key is durable: the trusted generation
 * advances (a worker), checkpoints run again. */
void ti_reenc_switch_commit(struct td_layer *l);
/* The header write failed: which key the header on disk names is not
 * known, so the layer refuses writes until the next open settles it. */
void ti_reenc_switch_abort(struct td_layer *l, int err);

/* What an inspection tool (vdkey audit) learns about freshness without
 * opening the layer: the authenticated generation, whether the tree root
 * in the superblock matches the stored L2 array, and the trusted
 * generation of this host (lower->ctx->trust; 0 without a trusted store). */
struct ti_fresh_status {
	unsigned version;    /* integrity parameters version */
	uint64_t generation; /* epoch of the valid superblock */
	uint64_t trusted;    /* the trusted store's, 0 = none recorded */
	int root_ok;	     /* v2: 1 root verifies, 0 not; v1: -1 */
	int rollback;	     /* generation < trusted */
};
int ti_fresh_status(struct td_layer *lower, const struct ti_params *p, const uint8_t uuid[16],
		    const uint8_t mac_key[32], const uint8_t tree_key[32],
		    struct ti_fresh_status *st, char *err, size_t errlen);
/* Sets the trusted generation of uuid to the image's (vdkey
 * accept-rollback). -ENOTSUP without a trusted store. */
int ti_accept_generation(const struct td_trust_ops *trust, const uint8_t uuid[16],
			 uint64_t generation, char *err, size_t errlen);

extern const struct td_driver td_drv_integrity;

/* Writes fresh metadata (zeroed tag table and journal, epoch-0
 * superblock) for a newly formatted image. */
int ti_format(struct td_layer *lower, const struct ti_params *p, const uint8_t uuid[16],
	      const uint8_t mac_key[32], char *err, size_t errlen);

#ifdef TD_TEST_BUILD
/* Test builds only (libtd-test.a): break the layer on purpose, so that the
 * crash simulator (tests/tools/crashsim.c) shows it notices. Applies to
 * every integrity layer opened afterwards in this process. */
enum ti_test_break {
	TI_TEST_NONE,
	TI_TEST_NO_JOURNAL_WAIT, /* data written before its journal records */
	TI_TEST_FP_OFF,		 /* no flush points (the layer before them) */
	TI_TEST_FP_EARLY,	 /* the flush point goes out before the lower flush */
	TI_TEST_FP_NOEXCL,	 /* writes in flight are claimed too */
};
void ti_test_break(enum ti_test_break mode);
#endif

#endif
