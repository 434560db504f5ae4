/* The qcow2 on-disk format (QEMU docs/interop/qcow2.txt; our subset is
 * docs/FORMAT-qcow2.md): header parsing and encoding, table entry
 * decoding, refcount arithmetic. Pure functions on buffers, no I/O, so
 * the unit tests and fuzzers can feed them anything. */
#ifndef TD_QCOW2_FORMAT_H
#define TD_QCOW2_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QCOW2_MAGIC 0x514649fbu	  /* "QFI\xfb" */
#define QCOW2_MIN_CLUSTER_BITS 12 /* 4 KiB: our block size */
#define QCOW2_MAX_CLUSTER_BITS 21 /* 2 MiB, QEMU's limit too */
#define QCOW2_V2_HEADER_LEN 72u
#define QCOW2_V3_HEADER_LEN 104u
#define QCOW2_MAX_L1_BYTES (32u << 20)	    /* QEMU's limit */
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20) /* QEMU's limit */
#define QCOW2_MAX_BACKING_NAME 1023u
#define QCOW2_MAX_FMT_NAME 31u
#define QCOW2_MAX_SNAPSHOTS 65536u
#define QCOW2_MAX_HOST_OFFSET (1ull << 56) /* L1/L2 entries hold bits 9-55 */
#define QCOW2_MAX_VIRTUAL_SIZE (1ull << 61)

/* incompatible_features */
#define QCOW2_INCOMPAT_DIRTY (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ull << 4)
/* compatible_features */
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)

/* header extension types */
#define QCOW2_EXT_END 0u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857u
#define QCOW2_EXT_BITMAPS 0x23852875u
#define QCOW2_EXT_CRYPTO 0x0537be77u
#define QCOW2_EXT_DATA_FILE 0x44415441u

/* L1 / L2 entry bits */
#define QCOW2_OFLAG_COPIED (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO (1ull << 0)
#define QCOW2_OFFSET_MASK 0x00fffffffffffe00ull /* bits 9-55 */
#define QCOW2_L1_RESERVED 0x7f000000000001ffull /* bits 0-8, 56-62 */
#define QCOW2_L2_RESERVED 0x3f000000000001feull /* bits 1-8, 56-61 */
#define QCOW2_RT_RESERVED 0x00000000000001ffull /* bits 0-8 */

/* Header fields, the checks we made on them, and derived values. */
struct qcow2_hdr {
	uint32_t version;
	uint32_t cluster_bits;
	uint64_t cluster_size;
	uint64_t size; /* virtual size in bytes */
	uint32_t crypt_method;
	uint32_t l1_size; /* entries */
	uint64_t l1_offset;
	uint64_t rt_offset;
	uint32_t rt_clusters;
	uint32_t nb_snapshots;
	uint64_t snapshots_offset;
	uint64_t incompat, compat, autoclear;
	uint32_t refcount_order;
	uint32_t header_length;
	uint8_t compression_type;
	uint64_t backing_offset;
	uint32_t backing_len;
	char backing[QCOW2_MAX_BACKING_NAME + 1]; /* "" when none */
	char backing_fmt[QCOW2_MAX_FMT_NAME + 1]; /* "" when the extension is absent */
	/* derived */
	uint32_t l2_bits;    /* log2 of entries per L2 table */
	uint64_t l1_needed;  /* L1 entries that cover size */
	uint64_t rb_entries; /* refcount entries per refcount block */
	uint64_t rt_entries; /* entries in the refcount table */
};

/* parse flags */
#define QCOW2_PARSE_WRITABLE 0x1u /* refuse what may only be read (dirty, corrupt, v2, ...) */

/* Cluster size the header claims, if its magic, version and cluster_bits
 * are acceptable; 0 otherwise (qcow2_hdr_parse then says why). */
uint64_t qcow2_hdr_cluster_size(const uint8_t *buf, size_t len);

/* Parses and checks the header in buf, the first min(cluster, file)
 * bytes of the image (zero-padded to at least 4096 by the caller).
 * file_size bounds every offset. 0, or -EINVAL/-ENOTSUP with a one-line
 * reason in err. */
int qcow2_hdr_parse(const uint8_t *buf, size_t len, uint64_t file_size, unsigned flags,
		    struct qcow2_hdr *h, char *err, size_t errlen);

/* Writes a fresh v3 header (refcount_order 4, no features) with the
 * backing name and format extension into buf (len >= cluster size,
 * zeroed by the caller). 0 or -EINVAL. */
int qcow2_hdr_encode(const struct qcow2_hdr *h, uint8_t *buf, size_t len);

/* ---- table entries ---------------------------------------------------- */

enum qcow2_ckind {
	QCOW2_C_UNALLOC,    /* read from the backing file, or zeros */
	QCOW2_C_ZERO_PLAIN, /* reads as zeros, no host cluster */
	QCOW2_C_ZERO_ALLOC, /* reads as zeros, host cluster kept (ours to reuse) */
	QCOW2_C_NORMAL,	    /* data at host */
	QCOW2_C_COMPRESSED, /* not supported */
	QCOW2_C_INVALID,    /* reserved bits or unaligned offset */
};

/* Decodes a (host-endian) L2 entry of an image with the given version and
 * cluster_bits. host gets the cluster offset for NORMAL / ZERO_ALLOC. */
enum qcow2_ckind qcow2_l2_decode(uint64_t e, uint32_t version, uint32_t cluster_bits,
				 uint64_t *host, bool *copied);
uint64_t qcow2_l2_normal(uint64_t host);
uint64_t qcow2_l2_zero_alloc(uint64_t host);
uint64_t qcow2_l2_zero_plain(void);

/* L1 entry: 0 unallocated, 1 allocated (*l2 set), -1 invalid. */
int qcow2_l1_decode(uint64_t e, uint32_t cluster_bits, uint64_t *l2);
/* Refcount table entry: same convention. */
int qcow2_rt_decode(uint64_t e, uint32_t cluster_bits, uint64_t *rb);

/* ---- refcounts -------------------------------------------------------- */

uint64_t qcow2_rb_entries(uint32_t cluster_bits, uint32_t refcount_order);
uint64_t qcow2_rc_get(const uint8_t *blk, uint32_t order, uint64_t idx);
/* v must fit in 1 << order bits; returns -ERANGE otherwise. */
int qcow2_rc_set(uint8_t *blk, uint32_t order, uint64_t idx, uint64_t v);
uint64_t qcow2_rc_max(uint32_t order);

/* ---- big-endian helpers ----------------------------------------------- */

uint32_t qcow2_be32(const uint8_t *p);
uint64_t qcow2_be64(const uint8_t *p);
void qcow2_put_be32(uint8_t *p, uint32_t v);
void qcow2_put_be64(uint8_t *p, uint64_t v);

#endif
