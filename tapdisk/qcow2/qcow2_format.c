/* qcow2 header parsing / encoding and table entry arithmetic. Every check
 * a hostile header needs lives here, in one place, so that the image
 * opener can trust what it gets and the unit tests can pin each refusal. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tapdisk/qcow2/qcow2_format.h"

uint32_t qcow2_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint64_t qcow2_be64(const uint8_t *p)
{
	return (uint64_t)qcow2_be32(p) << 32 | qcow2_be32(p + 4);
}

void qcow2_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

void qcow2_put_be64(uint8_t *p, uint64_t v)
{
	qcow2_put_be32(p, (uint32_t)(v >> 32));
	qcow2_put_be32(p + 4, (uint32_t)v);
}

uint64_t qcow2_hdr_cluster_size(const uint8_t *buf, size_t len)
{
	uint32_t v, bits;

	if (len < QCOW2_V2_HEADER_LEN || qcow2_be32(buf) != QCOW2_MAGIC)
		return 0;
	v = qcow2_be32(buf + 4);
	bits = qcow2_be32(buf + 20);
	if ((v != 2 && v != 3) || bits < QCOW2_MIN_CLUSTER_BITS || bits > QCOW2_MAX_CLUSTER_BITS)
		return 0;
	return 1ull << bits;
}

/* The name the image's feature table gives an incompatible bit, if any. */
static const char *feature_name(const uint8_t *tbl, uint32_t tlen, unsigned bit, char *out,
				size_t outlen)
{
	uint32_t i;

	if (!tbl)
		return NULL;
	for (i = 0; i + 48 <= tlen; i += 48) {
		if (tbl[i] == 0 && tbl[i + 1] == bit) {
			size_t n = strnlen((const char *)tbl + i + 2, 46);

			if (n >= outlen)
				n = outlen - 1;
			memcpy(out, tbl + i + 2, n);
			out[n] = 0;
			for (size_t k = 0; k < n; k++)
				if (out[k] < 0x20 || out[k] > 0x7e)
					out[k] = '?';
			return out;
		}
	}
	return NULL;
}

/* [a, a+al) and [b, b+bl) intersect; lengths are nonzero and ends do not overflow */
static bool overlaps(uint64_t a, uint64_t al, uint64_t b, uint64_t bl)
{
	return al && bl && a < b + bl && b < a + al;
}

/* Walks the header extensions between the header and the end of the
 * extension area; remembers the backing format and the feature table. */
static int parse_extensions(const uint8_t *buf, uint64_t start, uint64_t end, struct qcow2_hdr *h,
			    const uint8_t **ftbl, uint32_t *ftlen, char *err, size_t errlen)
{
	uint64_t off = start;

	while (off + 8 <= end) {
		uint32_t type = qcow2_be32(buf + off), elen = qcow2_be32(buf + off + 4);
		uint64_t padded = ((uint64_t)elen + 7) & ~7ull;

		if (type == QCOW2_EXT_END)
			return 0;
		if (elen > end - off - 8) {
			snprintf(err, errlen,
				 "header extension 0x%08x at offset %llu overruns the header area",
				 type, (unsigned long long)off);
			return -EINVAL;
		}
		switch (type) {
		case QCOW2_EXT_BACKING_FORMAT:
			if (elen == 0 || elen > QCOW2_MAX_FMT_NAME ||
			    memchr(buf + off + 8, 0, elen)) {
				snprintf(err, errlen, "backing format extension is malformed");
				return -EINVAL;
			}
			memcpy(h->backing_fmt, buf + off + 8, elen);
			h->backing_fmt[elen] = 0;
			break;
		case QCOW2_EXT_FEATURE_TABLE:
			*ftbl = buf + off + 8;
			*ftlen = elen;
			break;
		default:
			break; /* kept on disk untouched: we never rewrite extensions */
		}
		off += 8 + padded;
	}
	return 0;
}

static int check_features(struct qcow2_hdr *h, unsigned flags, const uint8_t *ftbl, uint32_t ftlen,
			  char *err, size_t errlen)
{
	const uint64_t known = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT |
			       QCOW2_INCOMPAT_DATA_FILE | QCOW2_INCOMPAT_COMPRESSION |
			       QCOW2_INCOMPAT_EXTL2;
	bool writable = flags & QCOW2_PARSE_WRITABLE;
	uint64_t unknown = h->incompat & ~known;
	char name[48];

	if (h->crypt_method != 0) {
		snprintf(err, errlen,
			 "qcow2 encryption is not supported; use the crypt layer above "
			 "(crypt:qcow2:...)");
		return -ENOTSUP;
	}
	if (unknown) {
		unsigned bit = (unsigned)__builtin_ctzll(unknown);
		const char *n = feature_name(ftbl, ftlen, bit, name, sizeof(name));

		snprintf(err, errlen, "unsupported incompatible feature bit %u%s%s%s", bit,
			 n ? " (" : "", n ? n : "", n ? ")" : "");
		return -ENOTSUP;
	}
	if (h->incompat & QCOW2_INCOMPAT_DATA_FILE) {
		snprintf(err, errlen, "images with an external data file are not supported");
		return -ENOTSUP;
	}
	if (h->incompat & QCOW2_INCOMPAT_EXTL2) {
		snprintf(err, errlen, "extended L2 entries (subclusters) are not supported");
		return -ENOTSUP;
	}
	if (!!(h->incompat & QCOW2_INCOMPAT_COMPRESSION) != (h->compression_type != 0)) {
		snprintf(err, errlen, "compression type field (%u) disagrees with its feature bit",
			 h->compression_type);
		return -EINVAL;
	}
	if (writable && (h->incompat & QCOW2_INCOMPAT_CORRUPT)) {
		snprintf(
		    err, errlen,
		    "image is marked corrupt: repair it with 'qemu-img check -r all' or open it "
		    "read-only");
		return -EINVAL;
	}
	if (writable && (h->incompat & QCOW2_INCOMPAT_DIRTY)) {
		snprintf(err, errlen,
			 "image has the dirty bit set (lazy refcounts, not closed cleanly): repair "
			 "it with 'qemu-img check -r all' first");
		return -EINVAL;
	}
	if (writable && h->version == 2) {
		snprintf(err, errlen,
			 "qcow2 version 2 images are read-only here: upgrade with 'qemu-img amend "
			 "-f qcow2 -o compat=1.1', or open read-only");
		return -ENOTSUP;
	}
	if (writable && h->nb_snapshots) {
		snprintf(err, errlen,
			 "image has %u internal snapshots; writing is not supported (delete them "
			 "with 'qemu-img snapshot -d', or open read-only)",
			 h->nb_snapshots);
		return -ENOTSUP;
	}
	return 0;
}

/* Offsets and sizes of the L1 table, the refcount table and the snapshot
 * table: aligned, inside the file, not overlapping each other or the
 * header, sizes bounded. */
static int check_geometry(struct qcow2_hdr *h, uint64_t file_size, char *err, size_t errlen)
{
	uint64_t cs = h->cluster_size, l1_bytes, rt_bytes;

	if (h->size > QCOW2_MAX_VIRTUAL_SIZE) {
		snprintf(err, errlen, "virtual size %llu is too large",
			 (unsigned long long)h->size);
		return -EINVAL;
	}
	h->l2_bits = h->cluster_bits - 3;
	h->l1_needed = h->size ? ((h->size - 1) >> (h->cluster_bits + h->l2_bits)) + 1 : 0;
	l1_bytes = (uint64_t)h->l1_size * 8;
	if (l1_bytes > QCOW2_MAX_L1_BYTES) {
		snprintf(err, errlen, "L1 table of %u entries is too large (limit %u MiB)",
			 h->l1_size, QCOW2_MAX_L1_BYTES >> 20);
		return -EINVAL;
	}
	if (h->l1_size < h->l1_needed) {
		snprintf(err, errlen,
			 "L1 table of %u entries is too small for the virtual size %llu "
			 "(needs %llu)",
			 h->l1_size, (unsigned long long)h->size, (unsigned long long)h->l1_needed);
		return -EINVAL;
	}
	if (h->l1_size && (h->l1_offset % cs || h->l1_offset > file_size ||
			   l1_bytes > file_size - h->l1_offset)) {
		snprintf(err, errlen,
			 "L1 table offset %llu is unaligned or outside the file (%llu bytes)",
			 (unsigned long long)h->l1_offset, (unsigned long long)file_size);
		return -EINVAL;
	}
	rt_bytes = (uint64_t)h->rt_clusters * cs;
	if (h->rt_clusters == 0 || rt_bytes > QCOW2_MAX_REFTABLE_BYTES) {
		snprintf(err, errlen, "refcount table of %u clusters is empty or too large",
			 h->rt_clusters);
		return -EINVAL;
	}
	if (h->rt_offset % cs || h->rt_offset > file_size || rt_bytes > file_size - h->rt_offset) {
		snprintf(err, errlen,
			 "refcount table offset %llu is unaligned or outside the file (%llu bytes)",
			 (unsigned long long)h->rt_offset, (unsigned long long)file_size);
		return -EINVAL;
	}
	if (overlaps(h->l1_offset, l1_bytes, 0, cs) || overlaps(h->rt_offset, rt_bytes, 0, cs) ||
	    overlaps(h->l1_offset, l1_bytes, h->rt_offset, rt_bytes)) {
		snprintf(err, errlen,
			 "metadata overlaps: the L1 table (at %llu), the refcount table (at %llu) "
			 "and the header must not share clusters",
			 (unsigned long long)h->l1_offset, (unsigned long long)h->rt_offset);
		return -EINVAL;
	}
	if (h->nb_snapshots > QCOW2_MAX_SNAPSHOTS ||
	    (h->nb_snapshots && (h->snapshots_offset % cs || h->snapshots_offset == 0 ||
				 h->snapshots_offset >= file_size))) {
		snprintf(err, errlen, "snapshot table (%u entries at %llu) is invalid",
			 h->nb_snapshots, (unsigned long long)h->snapshots_offset);
		return -EINVAL;
	}
	if (h->refcount_order > 6) {
		snprintf(err, errlen, "refcount_order %u is invalid (at most 6)",
			 h->refcount_order);
		return -EINVAL;
	}
	h->rb_entries = qcow2_rb_entries(h->cluster_bits, h->refcount_order);
	h->rt_entries = rt_bytes / 8;
	return 0;
}

int qcow2_hdr_parse(const uint8_t *buf, size_t len, uint64_t file_size, unsigned flags,
		    struct qcow2_hdr *h, char *err, size_t errlen)
{
	const uint8_t *ftbl = NULL;
	uint32_t ftlen = 0;
	uint64_t ext_end;
	int rc;

	memset(h, 0, sizeof(*h));
	if (len < QCOW2_V2_HEADER_LEN || file_size < QCOW2_V2_HEADER_LEN) {
		snprintf(err, errlen, "file is too short to be a qcow2 image (%llu bytes)",
			 (unsigned long long)file_size);
		return -EINVAL;
	}
	if (qcow2_be32(buf) != QCOW2_MAGIC) {
		snprintf(err, errlen, "not a qcow2 image (bad magic)");
		return -EINVAL;
	}
	h->version = qcow2_be32(buf + 4);
	if (h->version != 2 && h->version != 3) {
		snprintf(err, errlen, "unsupported qcow2 version %u (2 and 3 are supported)",
			 h->version);
		return -ENOTSUP;
	}
	h->cluster_bits = qcow2_be32(buf + 20);
	if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS || h->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
		snprintf(err, errlen,
			 "cluster_bits %u is not supported (12 to 21: 4 KiB to 2 MiB clusters)",
			 h->cluster_bits);
		return -ENOTSUP;
	}
	h->cluster_size = 1ull << h->cluster_bits;
	h->backing_offset = qcow2_be64(buf + 8);
	h->backing_len = qcow2_be32(buf + 16);
	h->size = qcow2_be64(buf + 24);
	h->crypt_method = qcow2_be32(buf + 32);
	h->l1_size = qcow2_be32(buf + 36);
	h->l1_offset = qcow2_be64(buf + 40);
	h->rt_offset = qcow2_be64(buf + 48);
	h->rt_clusters = qcow2_be32(buf + 56);
	h->nb_snapshots = qcow2_be32(buf + 60);
	h->snapshots_offset = qcow2_be64(buf + 64);
	if (h->version == 2) {
		h->refcount_order = 4;
		h->header_length = QCOW2_V2_HEADER_LEN;
	} else {
		if (len < QCOW2_V3_HEADER_LEN) {
			snprintf(err, errlen, "header is truncated");
			return -EINVAL;
		}
		h->incompat = qcow2_be64(buf + 72);
		h->compat = qcow2_be64(buf + 80);
		h->autoclear = qcow2_be64(buf + 88);
		h->refcount_order = qcow2_be32(buf + 96);
		h->header_length = qcow2_be32(buf + 100);
		if (h->header_length < QCOW2_V3_HEADER_LEN || h->header_length % 8 ||
		    h->header_length > h->cluster_size || h->header_length > len) {
			snprintf(err, errlen, "header_length %u is invalid", h->header_length);
			return -EINVAL;
		}
		if (h->header_length > 104)
			h->compression_type = buf[104];
	}
	/* the extension area ends at the backing file name, or at the end of
	 * the first cluster */
	ext_end = len < h->cluster_size ? len : h->cluster_size;
	if (h->backing_offset) {
		if (h->backing_len == 0 || h->backing_len > QCOW2_MAX_BACKING_NAME) {
			snprintf(err, errlen, "backing file name length %u is invalid",
				 h->backing_len);
			return -EINVAL;
		}
		if (h->backing_offset < h->header_length || h->backing_offset > ext_end ||
		    h->backing_len > ext_end - h->backing_offset ||
		    h->backing_offset + h->backing_len > file_size) {
			snprintf(err, errlen, "backing file name lies outside the header cluster");
			return -EINVAL;
		}
		if (memchr(buf + h->backing_offset, 0, h->backing_len)) {
			snprintf(err, errlen, "backing file name contains a NUL byte");
			return -EINVAL;
		}
		memcpy(h->backing, buf + h->backing_offset, h->backing_len);
		h->backing[h->backing_len] = 0;
		ext_end = h->backing_offset;
	}
	rc = parse_extensions(buf, h->header_length, ext_end, h, &ftbl, &ftlen, err, errlen);
	if (rc < 0)
		return rc;
	rc = check_features(h, flags, ftbl, ftlen, err, errlen);
	if (rc < 0)
		return rc;
	return check_geometry(h, file_size, err, errlen);
}

int qcow2_hdr_encode(const struct qcow2_hdr *h, uint8_t *buf, size_t len)
{
	size_t blen = strlen(h->backing), flen = strlen(h->backing_fmt);
	uint64_t off = 112;

	if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS || h->cluster_bits > QCOW2_MAX_CLUSTER_BITS ||
	    len < (1ull << h->cluster_bits) || blen > QCOW2_MAX_BACKING_NAME ||
	    flen > QCOW2_MAX_FMT_NAME)
		return -EINVAL;
	qcow2_put_be32(buf, QCOW2_MAGIC);
	qcow2_put_be32(buf + 4, 3);
	qcow2_put_be32(buf + 20, h->cluster_bits);
	qcow2_put_be64(buf + 24, h->size);
	qcow2_put_be32(buf + 32, 0);
	qcow2_put_be32(buf + 36, h->l1_size);
	qcow2_put_be64(buf + 40, h->l1_offset);
	qcow2_put_be64(buf + 48, h->rt_offset);
	qcow2_put_be32(buf + 56, h->rt_clusters);
	qcow2_put_be32(buf + 96, 4); /* 16-bit refcounts */
	qcow2_put_be32(buf + 100, 112);
	/* byte 104: compression type zlib; 105-111 padding */
	if (flen) {
		qcow2_put_be32(buf + off, QCOW2_EXT_BACKING_FORMAT);
		qcow2_put_be32(buf + off + 4, (uint32_t)flen);
		memcpy(buf + off + 8, h->backing_fmt, flen);
		off += 8 + ((flen + 7) & ~(size_t)7);
	}
	off += 8; /* end-of-extensions marker, zeros */
	if (blen) {
		memcpy(buf + off, h->backing, blen);
		qcow2_put_be64(buf + 8, off);
		qcow2_put_be32(buf + 16, (uint32_t)blen);
	}
	return 0;
}

enum qcow2_ckind qcow2_l2_decode(uint64_t e, uint32_t version, uint32_t cluster_bits,
				 uint64_t *host, bool *copied)
{
	uint64_t off = e & QCOW2_OFFSET_MASK;

	*host = 0;
	*copied = e & QCOW2_OFLAG_COPIED;
	if (e & QCOW2_OFLAG_COMPRESSED)
		return QCOW2_C_COMPRESSED;
	if (e & QCOW2_L2_RESERVED)
		return QCOW2_C_INVALID;
	if (off & ((1ull << cluster_bits) - 1))
		return QCOW2_C_INVALID;
	if (e & QCOW2_OFLAG_ZERO) {
		if (version < 3)
			return QCOW2_C_INVALID;
		*host = off;
		return off ? QCOW2_C_ZERO_ALLOC : QCOW2_C_ZERO_PLAIN;
	}
	if (!off)
		return *copied ? QCOW2_C_INVALID : QCOW2_C_UNALLOC;
	*host = off;
	return QCOW2_C_NORMAL;
}

uint64_t qcow2_l2_normal(uint64_t host)
{
	return host | QCOW2_OFLAG_COPIED;
}

uint64_t qcow2_l2_zero_alloc(uint64_t host)
{
	return host | QCOW2_OFLAG_COPIED | QCOW2_OFLAG_ZERO;
}

uint64_t qcow2_l2_zero_plain(void)
{
	return QCOW2_OFLAG_ZERO;
}

int qcow2_l1_decode(uint64_t e, uint32_t cluster_bits, uint64_t *l2)
{
	uint64_t off = e & QCOW2_OFFSET_MASK;

	*l2 = 0;
	if (e & QCOW2_L1_RESERVED || off & ((1ull << cluster_bits) - 1))
		return -1;
	if (!off)
		return 0;
	*l2 = off;
	return 1;
}

int qcow2_rt_decode(uint64_t e, uint32_t cluster_bits, uint64_t *rb)
{
	*rb = 0;
	if (e & QCOW2_RT_RESERVED || e & ((1ull << cluster_bits) - 1) || e >= QCOW2_MAX_HOST_OFFSET)
		return -1;
	if (!e)
		return 0;
	*rb = e;
	return 1;
}

uint64_t qcow2_rb_entries(uint32_t cluster_bits, uint32_t refcount_order)
{
	return 1ull << (cluster_bits + 3 - refcount_order);
}

uint64_t qcow2_rc_max(uint32_t order)
{
	return order >= 6 ? UINT64_MAX : (1ull << (1u << order)) - 1;
}

uint64_t qcow2_rc_get(const uint8_t *blk, uint32_t order, uint64_t idx)
{
	switch (order) {
	case 0:
	case 1:
	case 2: {
		unsigned bits = 1u << order, per = 8 / bits;
		unsigned shift = (unsigned)(idx % per) * bits;

		return (blk[idx / per] >> shift) & ((1u << bits) - 1);
	}
	case 3:
		return blk[idx];
	case 4:
		return (uint64_t)blk[2 * idx] << 8 | blk[2 * idx + 1];
	case 5:
		return qcow2_be32(blk + 4 * idx);
	default:
		return qcow2_be64(blk + 8 * idx);
	}
}

int qcow2_rc_set(uint8_t *blk, uint32_t order, uint64_t idx, uint64_t v)
{
	if (order > 6 || v > qcow2_rc_max(order))
		return -ERANGE;
	switch (order) {
	case 0:
	case 1:
	case 2: {
		unsigned bits = 1u << order, per = 8 / bits;
		unsigned shift = (unsigned)(idx % per) * bits, mask = ((1u << bits) - 1) << shift;

		blk[idx / per] = (uint8_t)((blk[idx / per] & ~mask) | ((unsigned)v << shift));
		break;
	}
	case 3:
		blk[idx] = (uint8_t)v;
		break;
	case 4:
		blk[2 * idx] = (uint8_t)(v >> 8);
		blk[2 * idx + 1] = (uint8_t)v;
		break;
	case 5:
		qcow2_put_be32(blk + 4 * idx, (uint32_t)v);
		break;
	default:
		qcow2_put_be64(blk + 8 * idx, v);
		break;
	}
	return 0;
}
