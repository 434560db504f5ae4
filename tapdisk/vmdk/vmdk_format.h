/* The VMDK on-disk format (VMware Virtual Disk Format 1.1; our subset is
 * docs/FORMAT-vmdk.md): the hosted sparse extent header and footer, the
 * text descriptor, grain directory and grain table entries, compressed
 * grain markers and their bounded inflate. Pure functions on buffers, no
 * I/O, so unit tests and the fuzzer (fuzz/fuzz_vmdk.c) can feed them
 * anything. */
#ifndef TD_VMDK_FORMAT_H
#define TD_VMDK_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VMDK_MAGIC 0x564d444bu /* "KDMV" on disk */
#define VMDK_COWD_MAGIC 0x44574f43u
#define VMDK_SECTOR 512u
#define VMDK_GD_AT_END 0xffffffffffffffffull

#define VMDK_FLAG_NL_DETECT (1u << 0)
#define VMDK_FLAG_RGD (1u << 1)
#define VMDK_FLAG_ZERO_GRAIN (1u << 2)
#define VMDK_FLAG_COMPRESSED (1u << 16)
#define VMDK_FLAG_MARKERS (1u << 17)
#define VMDK_FLAGS_KNOWN                                                                           \
	(VMDK_FLAG_NL_DETECT | VMDK_FLAG_RGD | VMDK_FLAG_ZERO_GRAIN | VMDK_FLAG_COMPRESSED |       \
	 VMDK_FLAG_MARKERS)

#define VMDK_COMPRESS_NONE 0u
#define VMDK_COMPRESS_DEFLATE 1u

#define VMDK_MIN_GRAIN_SECTORS 8u	    /* 4 KiB: our block size */
#define VMDK_MAX_GRAIN_SECTORS 2048u	    /* 1 MiB */
#define VMDK_MIN_GTES 128u		    /* a GT of one sector */
#define VMDK_MAX_GTES 512u		    /* QEMU's limit too */
#define VMDK_MAX_CAPACITY (1ull << 37)	    /* sectors: 64 TiB */
#define VMDK_MAX_GD_ENTRIES (4ull << 20)    /* 16 MiB of GD */
#define VMDK_MAX_GRAIN_SECTOR 0xffffffffull /* GTEs are 32-bit sector numbers */
#define VMDK_MAX_EXTENTS 4096u
#define VMDK_MAX_DESC_BYTES 65536u
#define VMDK_MAX_NAME 1023u

/* marker types (stream-optimized) */
#define VMDK_MARKER_EOS 0u
#define VMDK_MARKER_GT 1u
#define VMDK_MARKER_GD 2u
#define VMDK_MARKER_FOOTER 3u
#define VMDK_GRAIN_MARKER_LEN 12u /* uint64 lba, uint32 size, then the data */

/* Header fields, checked, and what follows from them. Offsets in sectors
 * as on disk; *_bytes in bytes. */
struct vmdk_hdr {
	uint32_t version;
	uint32_t flags;
	uint64_t capacity; /* sectors */
	uint64_t grain_sectors;
	uint64_t desc_offset, desc_size; /* sectors; 0 0 when none */
	uint32_t gtes_per_gt;
	uint64_t rgd_offset, gd_offset; /* sectors; gd_offset may be VMDK_GD_AT_END */
	uint64_t overhead;		/* sectors */
	uint8_t unclean;
	uint16_t compress;
	/* derived */
	bool rgd;	 /* a redundant GD is kept */
	bool zero_grain; /* GTE 1 means a zeroed grain */
	bool compressed; /* grains are deflate streams behind grain markers */
	uint64_t grain_bytes;
	uint64_t gt_bytes;   /* gtes_per_gt * 4 */
	uint64_t gt_span;    /* bytes one GT occupies (whole sectors) */
	uint64_t gt_cover;   /* guest bytes one GT maps */
	uint64_t gd_entries; /* GTs that cover capacity */
	uint64_t gd_span;    /* bytes one GD occupies (whole sectors) */
};

/* Decodes and checks the 512-byte header in buf: magic, version, flags,
 * grain size, GT size, capacity, compression. Nothing about where things
 * lie in the file (vmdk_hdr_check). 0 or -EINVAL/-ENOTSUP with a reason. */
int vmdk_hdr_decode(const uint8_t *buf, size_t len, struct vmdk_hdr *h, char *err, size_t errlen);

/* A stream-optimized header whose gd_offset is VMDK_GD_AT_END: marker
 * and footer are the 512 bytes at file_size - 1536 and - 1024. The footer
 * must be a footer marker followed by a header that agrees with h on
 * everything but gd_offset, which h then takes. 0 or -EINVAL. */
int vmdk_footer_merge(struct vmdk_hdr *h, const uint8_t *marker, const uint8_t *footer, char *err,
		      size_t errlen);

/* Where things lie: the descriptor and the GDs inside a file of file_size
 * bytes, clear of the header and of each other. 0 or -EINVAL. */
int vmdk_hdr_check(const struct vmdk_hdr *h, uint64_t file_size, char *err, size_t errlen);

/* Writes h (version, flags, sizes, offsets) as a 512-byte header with the
 * newline check characters. For tests and seeds. */
void vmdk_hdr_encode(const struct vmdk_hdr *h, uint8_t *buf);

/* Does [off, off+len) (bytes) touch the header, the descriptor or a GD? */
bool vmdk_hits_fixed_meta(const struct vmdk_hdr *h, uint64_t off, uint64_t len);

/* A GD entry (host-endian): NULL when it is 0 or names a GT wholly inside
 * the file and clear of the header, descriptor and GDs; else why not. */
const char *vmdk_gd_entry_check(const struct vmdk_hdr *h, uint32_t e, uint64_t file_size);

enum vmdk_gte_kind {
	VMDK_GTE_UNALLOC, /* reads as zeros (no parent) */
	VMDK_GTE_ZERO,	  /* a zeroed grain */
	VMDK_GTE_DATA,	  /* *host: the grain (or its marker) */
	VMDK_GTE_INVALID, /* outside the file, or on the header / descriptor / GDs */
};

/* Decodes a GTE (host-endian) of an extent file of file_size bytes. An
 * uncompressed grain must lie wholly inside the file, a compressed one's
 * marker header must. Overlap with grain tables is the caller's check. */
enum vmdk_gte_kind vmdk_gte_decode(const struct vmdk_hdr *h, uint32_t e, uint64_t file_size,
				   uint64_t *host);

/* ---- compressed grains ---------------------------------------------------- */

/* The most bytes a grain marker and its deflate data can take: what a
 * reader reads at a GTE before it knows the size (a multiple of 512). */
uint64_t vmdk_marker_max_read(const struct vmdk_hdr *h);

/* Checks the grain marker at the start of buf (avail bytes read, clipped
 * at the end of the file): its LBA must be expect_lba (sectors), its size
 * non-zero, within what was read and within the deflate bound of one
 * grain. *size gets the data length (the data starts at byte 12). */
int vmdk_marker_parse(const struct vmdk_hdr *h, const uint8_t *buf, size_t avail,
		      uint64_t expect_lba, uint32_t *size, char *err, size_t errlen);

/* Inflates one zlib stream into out, which holds exactly one grain
 * (outlen). 0 only when the stream ends having produced exactly outlen
 * bytes; -EIO otherwise (bad data, short, or more than one grain: the
 * output buffer is never exceeded). */
int vmdk_inflate_grain(const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen);

/* ---- descriptors -------------------------------------------------------------- */

enum vmdk_ext_type { VMDK_EXT_FLAT, VMDK_EXT_SPARSE, VMDK_EXT_ZERO };
enum vmdk_access { VMDK_ACC_RW, VMDK_ACC_RDONLY, VMDK_ACC_NOACCESS };

struct vmdk_dext {
	enum vmdk_access access;
	enum vmdk_ext_type type;
	uint64_t sectors;
	uint64_t offset; /* sectors into the file (FLAT) */
	char name[VMDK_MAX_NAME + 1];
};

struct vmdk_desc {
	uint32_t version;
	uint32_t cid, parent_cid;
	bool has_parent; /* parentCID other than ffffffff, or parentFileNameHint */
	char create_type[64];
	unsigned next;
	struct vmdk_dext *ext; /* heap, next entries */
	uint64_t total;	       /* sectors */
};

/* Parses a text descriptor (len bytes; it ends at the first NUL, as an
 * embedded one is padded). embedded: the descriptor inside a sparse file
 * (its extent lines are not needed, not required). 0 or -EINVAL/-ENOTSUP
 * with a reason naming the line; d->ext is allocated (vmdk_desc_free). */
int vmdk_desc_parse(const char *text, size_t len, bool embedded, struct vmdk_desc *d, char *err,
		    size_t errlen);
void vmdk_desc_free(struct vmdk_desc *d);

/* Does buf look like the start of a text descriptor (printable text)? */
bool vmdk_looks_like_text(const uint8_t *buf, size_t len);

/* ---- little-endian helpers --------------------------------------------------- */

static inline uint32_t vmdk_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t vmdk_le64(const uint8_t *p)
{
	return (uint64_t)vmdk_le32(p) | (uint64_t)vmdk_le32(p + 4) << 32;
}

static inline void vmdk_put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline void vmdk_put_le64(uint8_t *p, uint64_t v)
{
	vmdk_put_le32(p, (uint32_t)v);
	vmdk_put_le32(p + 4, (uint32_t)(v >> 32));
}

#endif
