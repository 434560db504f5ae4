/* The VHD on-disk format (Microsoft Virtual Hard Disk Image Format 1.0;
 * our subset is docs/FORMAT-vhd.md): footer and dynamic header parsing
 * and encoding, checksums, BAT entries, parent locators, sector bitmaps,
 * CHS geometry. Pure functions on buffers, no I/O, so the unit tests and
 * the fuzzer (fuzz/fuzz_vhd.c) can feed them anything. */
#ifndef TD_VHD_FORMAT_H
#define TD_VHD_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VHD_SECTOR 512u
#define VHD_FOOTER_LEN 512u
#define VHD_HEADER_LEN 1024u
#define VHD_TYPE_FIXED 2u
#define VHD_TYPE_DYNAMIC 3u
#define VHD_TYPE_DIFF 4u
#define VHD_BAT_UNUSED 0xffffffffu
#define VHD_NO_OFFSET 0xffffffffffffffffull
#define VHD_MIN_BLOCK (4u << 10)
#define VHD_MAX_BLOCK (256u << 20)
#define VHD_DEFAULT_BLOCK (2u << 20)
#define VHD_MAX_BAT_ENTRIES (1u << 22)
#define VHD_MAX_DYN_SIZE (2ull << 40)	/* 32-bit sector offsets: 2 TiB of file */
#define VHD_MAX_FIXED_SIZE (1ull << 50) /* bounded by the file anyway */
#define VHD_MAX_LOCATOR 8192u		/* bytes of one locator's data */
#define VHD_MAX_PATH 4096u
#define VHD_NLOC 8

/* platform codes of parent locators */
#define VHD_PLAT_NONE 0u
#define VHD_PLAT_WI2R 0x57693272u /* "Wi2r", deprecated */
#define VHD_PLAT_WI2K 0x5769326bu /* "Wi2k", deprecated */
#define VHD_PLAT_W2RU 0x57327275u /* "W2ru": relative path, UTF-16LE */
#define VHD_PLAT_W2KU 0x57326b75u /* "W2ku": absolute path, UTF-16LE */
#define VHD_PLAT_MAC 0x4d616320u  /* "Mac ": alias blob, unsupported */
#define VHD_PLAT_MACX 0x4d616358u /* "MacX": file URL, UTF-8 */

/* seconds from the Unix epoch to 2000-01-01 00:00:00 UTC, VHD's epoch */
#define VHD_EPOCH_OFFSET 946684800ull

struct vhd_footer {
	uint32_t features;
	uint32_t version;
	uint64_t data_offset;
	uint32_t timestamp;
	uint8_t creator_app[4];
	uint32_t creator_ver;
	uint32_t creator_os;
	uint64_t orig_size;
	uint64_t cur_size;
	uint16_t cyls;
	uint8_t heads, spt;
	uint32_t type;
	uint32_t checksum;
	uint8_t uuid[16];
	uint8_t saved_state;
};

struct vhd_locator {
	uint32_t code;
	uint32_t space; /* as stored (sectors, or bytes for some writers) */
	uint32_t len;	/* bytes of data */
	uint64_t off;	/* absolute file offset of the data */
};

struct vhd_header {
	uint64_t data_offset;
	uint64_t table_offset;
	uint32_t version;
	uint32_t max_entries;
	uint32_t block_size;
	uint32_t checksum;
	uint8_t parent_uuid[16];
	uint32_t parent_ts;
	uint8_t parent_name_raw[512]; /* UTF-16BE as stored */
	struct vhd_locator loc[VHD_NLOC];
	/* derived by vhd_header_parse */
	uint32_t block_bits;
	uint32_t bitmap_bytes; /* per block, a multiple of 512 */
	uint64_t bat_bytes;    /* max_entries * 4 rounded up to 512 */
};

/* One's complement of the byte sum of buf[0..len) skipping the 4-byte
 * checksum field at csum_off. */
uint32_t vhd_checksum(const uint8_t *buf, size_t len, size_t csum_off);

/* Parses and checks a footer (512 bytes): cookie, checksum, version, disk
 * type, sizes, data offset. 0, or -EINVAL with a one-line reason. When
 * only the cookie is missing, -ENOENT (the caller may try the copy). */
int vhd_footer_parse(const uint8_t *buf, struct vhd_footer *f, char *err, size_t errlen);
/* Encodes f (its checksum recomputed) into 512 bytes. */
void vhd_footer_encode(struct vhd_footer *f, uint8_t *buf);

/* Where things are in a dynamic or differencing image file. */
struct vhd_layout {
	uint64_t file_size;
	uint64_t footer_off; /* file_size - 512 */
	uint64_t vsize;	     /* the footer's current size */
	bool diff;
};

/* Parses and checks a dynamic header (1024 bytes) located at
 * lay->data offset hdr_off: cookie, checksum, version, block size, BAT
 * placement and size, and (for differencing disks) the locators'
 * placement. 0 or -EINVAL with a one-line reason. */
int vhd_header_parse(const uint8_t *buf, uint64_t hdr_off, const struct vhd_layout *lay,
		     struct vhd_header *h, char *err, size_t errlen);
/* Encodes h (its checksum recomputed) into 1024 bytes. */
void vhd_header_encode(struct vhd_header *h, uint8_t *buf);

/* A reserved byte range of an image file that no block may touch. */
struct vhd_range {
	uint64_t off, len;
};

/* The ranges a block must stay clear of: footer copy, header, BAT,
 * locators. Returns how many were written (at most 3 + VHD_NLOC). */
int vhd_reserved_ranges(const struct vhd_header *h, uint64_t hdr_off, bool diff,
			struct vhd_range *out);

/* A BAT entry (host-endian): 0 unused, 1 allocated with *off the block's
 * byte offset (bitmap first), -1 pointing where no block may be (outside
 * [0, footer_off), on a reserved range). */
int vhd_bat_check(uint32_t entry, const struct vhd_header *h, uint64_t footer_off,
		  const struct vhd_range *res, int nres, uint64_t *off);

/* Decodes a parent locator's data into a UTF-8 POSIX path (absolute or
 * relative: the caller resolves relative ones against the child's
 * directory). W2ku/W2ru: UTF-16LE, backslashes become slashes; MacX: a
 * file:// URL, percent-decoded. 0; -ENOTSUP for a code we do not use or a
 * path that cannot name a file here (a Windows drive or UNC path); -EINVAL
 * for data that does not decode. */
int vhd_locator_decode(uint32_t code, const uint8_t *data, size_t len, char *out, size_t outlen);
/* The parent unicode name (UTF-16BE, NUL-padded) as UTF-8; same codes. */
int vhd_parent_name(const uint8_t raw[512], char *out, size_t outlen);

/* Encodes a UTF-8 string as UTF-16 (little- or big-endian) without a
 * terminator; '/' becomes '\\' when backslash is set. Returns the number
 * of bytes written, or -1 when it does not fit or is not UTF-8. */
int vhd_utf16_encode(const char *s, bool big_endian, bool backslash, uint8_t *out, size_t outlen);

/* ---- sector bitmaps (bit i: sector i, most significant bit first) -------- */

static inline bool vhd_bit(const uint8_t *bm, uint64_t i)
{
	return (bm[i >> 3] >> (7 - (i & 7))) & 1;
}
/* Length of the run of equal bits starting at sector `first`, at most n. */
uint64_t vhd_bitmap_run(const uint8_t *bm, uint64_t first, uint64_t n, bool *set);
void vhd_bitmap_set(uint8_t *bm, uint64_t first, uint64_t n);
/* All of sectors [first, first+n) set? */
bool vhd_bitmap_all(const uint8_t *bm, uint64_t first, uint64_t n);

/* ---- geometry ---------------------------------------------------------------- */

/* The spec's CHS geometry for a size in bytes. */
void vhd_chs(uint64_t size, uint16_t *cyls, uint8_t *heads, uint8_t *spt);

/* ---- big-endian helpers --------------------------------------------------------- */

uint32_t vhd_be32(const uint8_t *p);
uint64_t vhd_be64(const uint8_t *p);
void vhd_put_be32(uint8_t *p, uint32_t v);
void vhd_put_be64(uint8_t *p, uint64_t v);

#endif
