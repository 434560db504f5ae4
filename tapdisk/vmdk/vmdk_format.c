/* The VMDK format, pure functions (see vmdk_format.h and
 * docs/FORMAT-vmdk.md). Every value read from an image is checked here
 * before the driver uses it; all arithmetic on offsets is done so that it
 * cannot overflow. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "tapdisk/vmdk/vmdk_format.h"

static bool pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

int vmdk_hdr_decode(const uint8_t *buf, size_t len, struct vmdk_hdr *h, char *err, size_t errlen)
{
	uint32_t magic;
	uint64_t per_gt;

	memset(h, 0, sizeof(*h));
	if (len < VMDK_SECTOR) {
		snprintf(err, errlen, "is shorter than a VMDK header (512 bytes)");
		return -EINVAL;
	}
	magic = vmdk_le32(buf);
	if (magic != VMDK_MAGIC) {
		snprintf(err, errlen, "bad magic 0x%08x (a sparse extent starts with KDMV)", magic);
		return -EINVAL;
	}
	h->version = vmdk_le32(buf + 4);
	h->flags = vmdk_le32(buf + 8);
	h->capacity = vmdk_le64(buf + 12);
	h->grain_sectors = vmdk_le64(buf + 20);
	h->desc_offset = vmdk_le64(buf + 28);
	h->desc_size = vmdk_le64(buf + 36);
	h->gtes_per_gt = vmdk_le32(buf + 44);
	h->rgd_offset = vmdk_le64(buf + 48);
	h->gd_offset = vmdk_le64(buf + 56);
	h->overhead = vmdk_le64(buf + 64);
	h->unclean = buf[72];
	h->compress = (uint16_t)(buf[77] | buf[78] << 8);
	if (h->version < 1 || h->version > 3) {
		snprintf(err, errlen, "sparse extent version %u is not supported (1 to 3 are)",
			 h->version);
		return -ENOTSUP;
	}
	if (h->flags & ~VMDK_FLAGS_KNOWN) {
		snprintf(err, errlen, "unknown header flags 0x%08x", h->flags & ~VMDK_FLAGS_KNOWN);
		return -ENOTSUP;
	}
	if ((h->flags & VMDK_FLAG_NL_DETECT) &&
	    (buf[73] != '\n' || buf[74] != ' ' || buf[75] != '\r' || buf[76] != '\n')) {
		snprintf(err, errlen,
			 "the newline check characters are wrong (was the file copied in text "
			 "mode?)");
		return -EINVAL;
	}
	if (!pow2(h->grain_sectors) || h->grain_sectors < VMDK_MIN_GRAIN_SECTORS ||
	    h->grain_sectors > VMDK_MAX_GRAIN_SECTORS) {
		snprintf(err, errlen,
			 "grain size %llu sectors is not supported (a power of two from %u to %u)",
			 (unsigned long long)h->grain_sectors, VMDK_MIN_GRAIN_SECTORS,
			 VMDK_MAX_GRAIN_SECTORS);
		return -ENOTSUP;
	}
	if (!pow2(h->gtes_per_gt) || h->gtes_per_gt < VMDK_MIN_GTES ||
	    h->gtes_per_gt > VMDK_MAX_GTES) {
		snprintf(err, errlen,
			 "%u entries per grain table is not supported (a power of two from %u to "
			 "%u)",
			 h->gtes_per_gt, VMDK_MIN_GTES, VMDK_MAX_GTES);
		return -ENOTSUP;
	}
	if (h->capacity == 0 || h->capacity > VMDK_MAX_CAPACITY) {
		snprintf(err, errlen, "capacity %llu sectors is out of range (1 to %llu)",
			 (unsigned long long)h->capacity, (unsigned long long)VMDK_MAX_CAPACITY);
		return -EINVAL;
	}
	h->compressed = h->flags & VMDK_FLAG_COMPRESSED;
	if (h->compress > VMDK_COMPRESS_DEFLATE) {
		snprintf(err, errlen, "compression algorithm %u is not supported (deflate is)",
			 h->compress);
		return -ENOTSUP;
	}
	if (h->compressed != (h->compress == VMDK_COMPRESS_DEFLATE)) {
		snprintf(err, errlen,
			 "the compressed-grains flag and the compression algorithm (%u) disagree",
			 h->compress);
		return -EINVAL;
	}
	if ((h->flags & VMDK_FLAG_MARKERS) && !h->compressed) {
		snprintf(err, errlen, "markers without compressed grains are not supported");
		return -ENOTSUP;
	}
	h->rgd = h->flags & VMDK_FLAG_RGD;
	h->zero_grain = h->flags & VMDK_FLAG_ZERO_GRAIN;
	h->grain_bytes = h->grain_sectors * VMDK_SECTOR;
	h->gt_bytes = (uint64_t)h->gtes_per_gt * 4;
	h->gt_span = div_up(h->gt_bytes, VMDK_SECTOR) * VMDK_SECTOR;
	per_gt = h->grain_sectors * h->gtes_per_gt; /* <= 2^20 */
	h->gt_cover = per_gt * VMDK_SECTOR;
	h->gd_entries = div_up(h->capacity, per_gt);
	if (h->gd_entries > VMDK_MAX_GD_ENTRIES) {
		snprintf(err, errlen,
			 "the grain directory would have %llu entries (at most %llu): capacity "
			 "too large for the grain size",
			 (unsigned long long)h->gd_entries,
			 (unsigned long long)VMDK_MAX_GD_ENTRIES);
		return -EINVAL;
	}
	h->gd_span = div_up(h->gd_entries * 4, VMDK_SECTOR) * VMDK_SECTOR;
	if (h->desc_offset == 0)
		h->desc_size = 0;
	if (h->desc_size > 2048) {
		snprintf(err, errlen,
			 "embedded descriptor of %llu sectors is too large (at most 2048)",
			 (unsigned long long)h->desc_size);
		return -EINVAL;
	}
	if (h->gd_offset == 0) {
		snprintf(err, errlen, "grain directory offset is 0");
		return -EINVAL;
	}
	if (h->gd_offset == VMDK_GD_AT_END && !h->compressed) {
		snprintf(err, errlen, "grain directory 'at the end' without compressed grains");
		return -EINVAL;
	}
	if (h->rgd && (h->rgd_offset == 0 || h->rgd_offset == VMDK_GD_AT_END)) {
		snprintf(err, errlen, "redundant grain directory offset is invalid");
		return -EINVAL;
	}
	return 0;
}

int vmdk_footer_merge(struct vmdk_hdr *h, const uint8_t *marker, const uint8_t *footer, char *err,
		      size_t errlen)
{
	struct vmdk_hdr f;
	char why[200];

	if (vmdk_le64(marker) != 1 || vmdk_le32(marker + 8) != 0 ||
	    vmdk_le32(marker + 12) != VMDK_MARKER_FOOTER) {
		snprintf(err, errlen,
			 "the grain directory is 'at the end' but there is no footer marker 1536 "
			 "bytes before the end of the file");
		return -EINVAL;
	}
	if (vmdk_hdr_decode(footer, VMDK_SECTOR, &f, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "footer: %s", why);
		return -EINVAL;
	}
	if (f.gd_offset == VMDK_GD_AT_END || f.version != h->version || f.flags != h->flags ||
	    f.capacity != h->capacity || f.grain_sectors != h->grain_sectors ||
	    f.gtes_per_gt != h->gtes_per_gt || f.compress != h->compress ||
	    f.desc_offset != h->desc_offset || f.desc_size != h->desc_size ||
	    (h->rgd && f.rgd_offset != h->rgd_offset)) {
		snprintf(err, errlen, "the footer disagrees with the header");
		return -EINVAL;
	}
	h->gd_offset = f.gd_offset;
	return 0;
}

/* [a, a+al) and [b, b+bl) overlap (bytes; lengths may be 0) */
static bool overlap(uint64_t a, uint64_t al, uint64_t b, uint64_t bl)
{
	return al && bl && a < b + bl && b < a + al;
}

/* sector offset and byte length of a region inside the file? */
static bool inside(uint64_t sect, uint64_t bytes, uint64_t file_size)
{
	return sect <= file_size / VMDK_SECTOR && bytes <= file_size - sect * VMDK_SECTOR;
}

int vmdk_hdr_check(const struct vmdk_hdr *h, uint64_t file_size, char *err, size_t errlen)
{
	uint64_t d = h->desc_offset * VMDK_SECTOR, dl = h->desc_size * VMDK_SECTOR;

	if (h->gd_offset == VMDK_GD_AT_END) {
		snprintf(err, errlen, "grain directory location unknown");
		return -EINVAL;
	}
	if (dl && !inside(h->desc_offset, dl, file_size)) {
		snprintf(err, errlen, "the embedded descriptor runs past the end of the file");
		return -EINVAL;
	}
	if (!inside(h->gd_offset, h->gd_span, file_size)) {
		snprintf(err, errlen,
			 "the grain directory (sector %llu, %llu bytes) is not inside the file "
			 "(%llu bytes): truncated or corrupt",
			 (unsigned long long)h->gd_offset, (unsigned long long)h->gd_span,
			 (unsigned long long)file_size);
		return -EINVAL;
	}
	if (overlap(h->gd_offset * VMDK_SECTOR, h->gd_span, 0, VMDK_SECTOR) ||
	    overlap(h->gd_offset * VMDK_SECTOR, h->gd_span, d, dl)) {
		snprintf(err, errlen, "the grain directory overlaps the header or the descriptor");
		return -EINVAL;
	}
	if (!h->rgd)
		return 0;
	if (!inside(h->rgd_offset, h->gd_span, file_size)) {
		snprintf(err, errlen,
			 "the redundant grain directory (sector %llu) is not inside the file: "
			 "truncated or corrupt",
			 (unsigned long long)h->rgd_offset);
		return -EINVAL;
	}
	if (overlap(h->rgd_offset * VMDK_SECTOR, h->gd_span, 0, VMDK_SECTOR) ||
	    overlap(h->rgd_offset * VMDK_SECTOR, h->gd_span, d, dl) ||
	    overlap(h->rgd_offset * VMDK_SECTOR, h->gd_span, h->gd_offset * VMDK_SECTOR,
		    h->gd_span)) {
		snprintf(err, errlen,
			 "the redundant grain directory overlaps the header, the descriptor or the "
			 "grain directory");
		return -EINVAL;
	}
	return 0;
}

void vmdk_hdr_encode(const struct vmdk_hdr *h, uint8_t *buf)
{
	memset(buf, 0, VMDK_SECTOR);
	vmdk_put_le32(buf, VMDK_MAGIC);
	vmdk_put_le32(buf + 4, h->version);
	vmdk_put_le32(buf + 8, h->flags);
	vmdk_put_le64(buf + 12, h->capacity);
	vmdk_put_le64(buf + 20, h->grain_sectors);
	vmdk_put_le64(buf + 28, h->desc_offset);
	vmdk_put_le64(buf + 36, h->desc_size);
	vmdk_put_le32(buf + 44, h->gtes_per_gt);
	vmdk_put_le64(buf + 48, h->rgd_offset);
	vmdk_put_le64(buf + 56, h->gd_offset);
	vmdk_put_le64(buf + 64, h->overhead);
	buf[72] = h->unclean;
	buf[73] = '\n';
	buf[74] = ' ';
	buf[75] = '\r';
	buf[76] = '\n';
	buf[77] = (uint8_t)h->compress;
	buf[78] = (uint8_t)(h->compress >> 8);
}

bool vmdk_hits_fixed_meta(const struct vmdk_hdr *h, uint64_t off, uint64_t len)
{
	if (overlap(off, len, 0, VMDK_SECTOR))
		return true;
	if (h->desc_size &&
	    overlap(off, len, h->desc_offset * VMDK_SECTOR, h->desc_size * VMDK_SECTOR))
		return true;
	if (h->gd_offset != VMDK_GD_AT_END &&
	    overlap(off, len, h->gd_offset * VMDK_SECTOR, h->gd_span))
		return true;
	return h->rgd && overlap(off, len, h->rgd_offset * VMDK_SECTOR, h->gd_span);
}

const char *vmdk_gd_entry_check(const struct vmdk_hdr *h, uint32_t e, uint64_t file_size)
{
	if (e == 0)
		return NULL;
	if (!inside(e, h->gt_span, file_size))
		return "points past the end of the file";
	if (vmdk_hits_fixed_meta(h, (uint64_t)e * VMDK_SECTOR, h->gt_span))
		return "overlaps the header, the descriptor or a grain directory";
	return NULL;
}

enum vmdk_gte_kind vmdk_gte_decode(const struct vmdk_hdr *h, uint32_t e, uint64_t file_size,
				   uint64_t *host)
{
	uint64_t need = h->compressed ? VMDK_GRAIN_MARKER_LEN : h->grain_bytes;

	if (e == 0)
		return VMDK_GTE_UNALLOC;
	if (e == 1 && h->zero_grain)
		return VMDK_GTE_ZERO;
	if (!inside(e, need, file_size) || vmdk_hits_fixed_meta(h, (uint64_t)e * VMDK_SECTOR, need))
		return VMDK_GTE_INVALID;
	*host = (uint64_t)e * VMDK_SECTOR;
	return VMDK_GTE_DATA;
}

/* ---- compressed grains -------------------------------------------------------- */

/* zlib's deflate bound of n bytes (compressBound), with room to spare
 * for encoders that store incompressible data in small blocks */
static uint64_t deflate_bound(uint64_t n)
{
	return n + (n >> 6) + 1024;
}

uint64_t vmdk_marker_max_read(const struct vmdk_hdr *h)
{
	uint64_t n = VMDK_GRAIN_MARKER_LEN + deflate_bound(h->grain_bytes);

	return div_up(n, VMDK_SECTOR) * VMDK_SECTOR;
}

int vmdk_marker_parse(const struct vmdk_hdr *h, const uint8_t *buf, size_t avail,
		      uint64_t expect_lba, uint32_t *size, char *err, size_t errlen)
{
	uint64_t lba;
	uint32_t n;

	if (avail < VMDK_GRAIN_MARKER_LEN) {
		snprintf(err, errlen, "grain marker cut off by the end of the file");
		return -EIO;
	}
	lba = vmdk_le64(buf);
	n = vmdk_le32(buf + 8);
	if (lba != expect_lba) {
		snprintf(err, errlen, "grain marker says sector %llu, expected %llu",
			 (unsigned long long)lba, (unsigned long long)expect_lba);
		return -EIO;
	}
	if (n == 0 || n > deflate_bound(h->grain_bytes)) {
		snprintf(err, errlen, "grain marker size %u is out of range (1 to %llu)", n,
			 (unsigned long long)deflate_bound(h->grain_bytes));
		return -EIO;
	}
	if (n > avail - VMDK_GRAIN_MARKER_LEN) {
		snprintf(err, errlen, "grain marker size %u runs past the end of the file", n);
		return -EIO;
	}
	*size = n;
	return 0;
}

int vmdk_inflate_grain(const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen)
{
	z_stream s;
	int rc;

	memset(&s, 0, sizeof(s));
	if (inlen > UINT32_MAX || outlen > UINT32_MAX || inflateInit(&s) != Z_OK)
		return -EIO;
	s.next_in = (Bytef *)(uintptr_t)in;
	s.avail_in = (uInt)inlen;
	s.next_out = out;
	s.avail_out = (uInt)outlen;
	rc = inflate(&s, Z_FINISH);
	if (rc == Z_STREAM_END && s.total_out == outlen) {
		inflateEnd(&s);
		return 0;
	}
	inflateEnd(&s);
	return -EIO;
}

/* ---- descriptors ------------------------------------------------------------------- */

bool vmdk_looks_like_text(const uint8_t *buf, size_t len)
{
	size_t i, printable = 0;

	for (i = 0; i < len && buf[i]; i++) {
		if (buf[i] < 0x20 && buf[i] != '\n' && buf[i] != '\r' && buf[i] != '\t')
			return false;
		printable++;
	}
	return printable >= 8;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = 0;
	return s;
}

/* a decimal number of at most 19 digits; *p moves past it */
static int parse_u64(char **p, uint64_t *v)
{
	char *s = *p;
	uint64_t n = 0;
	int digits = 0;

	while (*s >= '0' && *s <= '9') {
		if (++digits > 19)
			return -1;
		n = n * 10 + (uint64_t)(*s - '0');
		s++;
	}
	if (!digits)
		return -1;
	*v = n;
	*p = s;
	return 0;
}

static int parse_hex32(const char *s, uint32_t *v)
{
	uint64_t n = 0;
	int digits = 0;

	for (; *s; s++) {
		int d;

		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else if (*s >= 'A' && *s <= 'F')
			d = *s - 'A' + 10;
		else
			return -1;
		if (++digits > 8)
			return -1;
		n = n << 4 | (uint64_t)d;
	}
	if (!digits)
		return -1;
	*v = (uint32_t)n;
	return 0;
}

static const char *word(char **p, char *buf, size_t len)
{
	size_t n = 0;
	char *s = *p;

	while (*s == ' ' || *s == '\t')
		s++;
	while (*s && *s != ' ' && *s != '\t') {
		if (n + 1 < len)
			buf[n++] = *s;
		s++;
	}
	buf[n] = 0;
	*p = s;
	return buf;
}

static int parse_extent(char *line, struct vmdk_dext *x, char *why, size_t whylen)
{
	char tok[32], *p = line, *q;
	size_t n;

	memset(x, 0, sizeof(*x));
	word(&p, tok, sizeof(tok));
	if (!strcmp(tok, "RW"))
		x->access = VMDK_ACC_RW;
	else if (!strcmp(tok, "RDONLY"))
		x->access = VMDK_ACC_RDONLY;
	else
		x->access = VMDK_ACC_NOACCESS;
	while (*p == ' ' || *p == '\t')
		p++;
	if (parse_u64(&p, &x->sectors) < 0 || x->sectors == 0 || x->sectors > VMDK_MAX_CAPACITY) {
		snprintf(why, whylen, "extent size is not a number of sectors from 1 to %llu",
			 (unsigned long long)VMDK_MAX_CAPACITY);
		return -EINVAL;
	}
	word(&p, tok, sizeof(tok));
	if (!strcmp(tok, "FLAT") || !strcmp(tok, "VMFS")) {
		x->type = VMDK_EXT_FLAT;
	} else if (!strcmp(tok, "SPARSE")) {
		x->type = VMDK_EXT_SPARSE;
	} else if (!strcmp(tok, "ZERO")) {
		x->type = VMDK_EXT_ZERO;
	} else if (!strcmp(tok, "VMFSSPARSE") || !strcmp(tok, "SESPARSE") ||
		   !strcmp(tok, "VMFSRDM") || !strcmp(tok, "VMFSRAW")) {
		snprintf(why, whylen,
			 "extent type %s is not supported (FLAT, VMFS, SPARSE and ZERO are)", tok);
		return -ENOTSUP;
	} else {
		snprintf(why, whylen, "unknown extent type '%.20s'", tok);
		return -EINVAL;
	}
	while (*p == ' ' || *p == '\t')
		p++;
	if (!*p) {
		if (x->type == VMDK_EXT_ZERO)
			return 0;
		snprintf(why, whylen, "extent without a file name");
		return -EINVAL;
	}
	if (*p != '"' || !(q = strchr(p + 1, '"'))) {
		snprintf(why, whylen, "extent file name is not in double quotes");
		return -EINVAL;
	}
	n = (size_t)(q - p - 1);
	if (n == 0 || n > VMDK_MAX_NAME) {
		snprintf(why, whylen, "extent file name is empty or longer than %u bytes",
			 VMDK_MAX_NAME);
		return -EINVAL;
	}
	memcpy(x->name, p + 1, n);
	x->name[n] = 0;
	p = q + 1;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p) {
		if (x->type != VMDK_EXT_FLAT || parse_u64(&p, &x->offset) < 0 ||
		    x->offset > (1ull << 50)) {
			snprintf(why, whylen, "unexpected text after the extent file name");
			return -EINVAL;
		}
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p) {
			snprintf(why, whylen, "unexpected text after the extent offset");
			return -EINVAL;
		}
	}
	if (x->type == VMDK_EXT_ZERO)
		x->name[0] = 0; /* a ZERO extent has no file */
	return 0;
}

static void unquote(char *v)
{
	size_t n = strlen(v);

	if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
		memmove(v, v + 1, n - 2);
		v[n - 2] = 0;
	}
}

int vmdk_desc_parse(const char *text, size_t len, bool embedded, struct vmdk_desc *d, char *err,
		    size_t errlen)
{
	char *copy, *line, *next;
	const char *nul = memchr(text, 0, len);
	unsigned lineno = 0, cap = 0;
	char why[160];
	int rc = 0;

	memset(d, 0, sizeof(*d));
	d->parent_cid = 0xffffffffu;
	if (nul)
		len = (size_t)(nul - text);
	if (len > VMDK_MAX_DESC_BYTES) {
		snprintf(err, errlen, "descriptor is larger than %u bytes", VMDK_MAX_DESC_BYTES);
		return -EINVAL;
	}
	copy = malloc(len + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, text, len);
	copy[len] = 0;
	for (line = copy; line; line = next) {
		char *eq, *s;

		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		lineno++;
		for (s = line; *s; s++)
			if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\r') {
				snprintf(err, errlen,
					 "descriptor line %u holds a control character: not a VMDK "
					 "descriptor",
					 lineno);
				rc = -EINVAL;
				goto out;
			}
		s = trim(line);
		if (!*s || *s == '#')
			continue;
		if (!strncmp(s, "RW ", 3) || !strncmp(s, "RDONLY ", 7) ||
		    !strncmp(s, "NOACCESS ", 9) || !strncmp(s, "RW\t", 3)) {
			struct vmdk_dext x;

			rc = parse_extent(s, &x, why, sizeof(why));
			if (rc < 0) {
				snprintf(err, errlen, "descriptor line %u: %s", lineno, why);
				goto out;
			}
			if (embedded)
				continue; /* the file itself; not used */
			if (d->next == VMDK_MAX_EXTENTS) {
				snprintf(err, errlen, "descriptor has more than %u extents",
					 VMDK_MAX_EXTENTS);
				rc = -EINVAL;
				goto out;
			}
			if (d->next == cap) {
				unsigned ncap = cap ? cap * 2 : 4;
				struct vmdk_dext *n = realloc(d->ext, ncap * sizeof(*n));

				if (!n) {
					rc = -ENOMEM;
					goto out;
				}
				d->ext = n;
				cap = ncap;
			}
			d->ext[d->next++] = x;
			d->total += x.sectors;
			if (d->total > VMDK_MAX_CAPACITY) {
				snprintf(err, errlen,
					 "descriptor extents add up to more than %llu sectors",
					 (unsigned long long)VMDK_MAX_CAPACITY);
				rc = -EINVAL;
				goto out;
			}
			continue;
		}
		eq = strchr(s, '=');
		if (!eq) {
			snprintf(err, errlen,
				 "descriptor line %u is neither 'key=value' nor an extent: not a "
				 "VMDK descriptor",
				 lineno);
			rc = -EINVAL;
			goto out;
		}
		*eq = 0;
		{
			char *k = trim(s), *v = trim(eq + 1);

			unquote(v);
			if (!strcmp(k, "version")) {
				uint64_t ver;
				char *p = v;

				if (parse_u64(&p, &ver) < 0 || *p || ver < 1 || ver > 3) {
					snprintf(
					    err, errlen,
					    "descriptor version '%.20s' is not supported (1 to "
					    "3)",
					    v);
					rc = -ENOTSUP;
					goto out;
				}
				d->version = (uint32_t)ver;
			} else if (!strcmp(k, "CID")) {
				if (parse_hex32(v, &d->cid) < 0) {
					snprintf(err, errlen, "descriptor line %u: bad CID",
						 lineno);
					rc = -EINVAL;
					goto out;
				}
			} else if (!strcmp(k, "parentCID")) {
				if (parse_hex32(v, &d->parent_cid) < 0) {
					snprintf(err, errlen, "descriptor line %u: bad parentCID",
						 lineno);
					rc = -EINVAL;
					goto out;
				}
				if (d->parent_cid != 0xffffffffu)
					d->has_parent = true;
			} else if (!strcmp(k, "parentFileNameHint")) {
				d->has_parent = true;
			} else if (!strcmp(k, "createType")) {
				snprintf(d->create_type, sizeof(d->create_type), "%s", v);
			}
			/* ddb.*, encoding, isNativeSnapshot...: not ours to read */
		}
	}
	if (!embedded && d->next == 0) {
		snprintf(err, errlen, "descriptor names no extent");
		rc = -EINVAL;
		goto out;
	}
	if (d->has_parent) {
		snprintf(err, errlen,
			 "VMDK delta disks (a parent: parentCID / parentFileNameHint) are not "
			 "supported");
		rc = -ENOTSUP;
		goto out;
	}
	if (!strcmp(d->create_type, "fullDevice") || !strcmp(d->create_type, "partitionedDevice") ||
	    !strncmp(d->create_type, "vmfsRaw", 7) || !strncmp(d->create_type, "vmfsRDM", 7) ||
	    !strcmp(d->create_type, "vmfsPassthroughRawDeviceMap")) {
		snprintf(err, errlen, "createType \"%s\" (raw devices) is not supported",
			 d->create_type);
		rc = -ENOTSUP;
		goto out;
	}
out:
	free(copy);
	if (rc < 0)
		vmdk_desc_free(d);
	return rc;
}

void vmdk_desc_free(struct vmdk_desc *d)
{
	free(d->ext);
	d->ext = NULL;
	d->next = 0;
}
