/* Guest -> host mapping down the backing chain, and the read path.
 *
 * A read is resolved piece by piece into extents (data at a host offset
 * of some image of the chain, or zeros), merging neighbours, so that
 * clusters contiguous in the file become one I/O (tapdisk/block/mread.h,
 * through q2_map). Resolution parks while an L2 table loads and resumes
 * where it stopped. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/core/log.h"
#include "tapdisk/core/util.h"
#include "tapdisk/qcow2/qcow2_int.h"

void q2_log_bad(struct q2 *q, uint32_t img, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	td_image_vlog_bad(&q->log_left, "qcow2", q->img[img]->path,
			  " (further messages suppressed)", fmt, ap);
	va_end(ap);
}

int q2_map(struct q2 *q, uint32_t level, uint64_t g, uint64_t n, struct td_wait *w,
	   struct td_ext *out)
{
	uint32_t i;

	memset(out, 0, sizeof(*out));
	for (i = level; i < q->nimg; i++) {
		struct q2img *im = q->img[i];
		const struct qcow2_hdr *h = &im->h;
		uint64_t cs, in, l1i, l2off, l2i, host;
		struct q2cent *e;
		bool copied;
		int rc;

		if (g >= im->vsize)
			break; /* past the end of a shorter backing file: zeros */
		if (n > im->vsize - g)
			n = im->vsize - g;
		if (im->raw) {
			out->kind = TD_EXT_DATA;
			out->img = i;
			out->host = g;
			out->len = n;
			return 0;
		}
		cs = h->cluster_size;
		in = g & (cs - 1);
		if (n > cs - in)
			n = cs - in;
		l1i = g >> (h->cluster_bits + h->l2_bits);
		if (l1i >= im->l1_entries)
			continue;
		rc = qcow2_l1_decode(q2_l1_entry(im, l1i), h->cluster_bits, &l2off);
		if (rc < 0) {
			q2_log_bad(q, i, "invalid L1 entry %llu", (unsigned long long)l1i);
			return -EIO;
		}
		if (rc == 0)
			continue;
		rc = q2c_get(&q->l2c, i, l2off, w, &e);
		if (rc < 0)
			return rc;
		l2i = (g >> h->cluster_bits) & ((1ull << h->l2_bits) - 1);
		switch (qcow2_l2_decode(qcow2_be64(e->buf + 8 * l2i), h->version, h->cluster_bits,
					&host, &copied)) {
		case QCOW2_C_UNALLOC:
			continue;
		case QCOW2_C_ZERO_PLAIN:
		case QCOW2_C_ZERO_ALLOC:
			out->kind = TD_EXT_ZERO;
			out->len = n;
			return 0;
		case QCOW2_C_NORMAL:
			/* a cluster may end past EOF (never written in full), not start there */
			if (host + cs > QCOW2_MAX_HOST_OFFSET || host < cs ||
			    host >= im->file_size) {
				q2_log_bad(q, i,
					   "L2 entry for guest offset %llu points at %llu, outside "
					   "the file",
					   (unsigned long long)g, (unsigned long long)host);
				return -EIO;
			}
			out->kind = TD_EXT_DATA;
			out->img = i;
			out->host = host + in;
			out->len = n;
			return 0;
		case QCOW2_C_COMPRESSED:
			q2_log_bad(q, i,
				   "compressed cluster at guest offset %llu: compressed clusters "
				   "are not supported (rewrite the image with 'qemu-img convert -O "
				   "qcow2')",
				   (unsigned long long)g);
			return -EIO;
		case QCOW2_C_INVALID:
		default:
			q2_log_bad(q, i, "invalid L2 entry for guest offset %llu",
				   (unsigned long long)g);
			return -EIO;
		}
	}
	out->kind = TD_EXT_ZERO;
	out->len = n;
	return 0;
}

/* ---- reads (tapdisk/block/mread.h) -------------------------------------------- */

static int map_at_level(struct td_mread *r, uint64_t g, uint64_t n, struct td_wait *w,
			struct td_ext *out)
{
	return q2_map(r->drv, r->level, g, n, w, out);
}

static const struct td_mread_ops read_ops = {
    .map = map_at_level,
    .read = q2io_read,
};

struct td_mread *q2rd_get(struct q2 *q)
{
	struct td_mread *r = td_pool_get(&q->rd_pool);

	if (r)
		td_mread_init(r, &read_ops, &q->fio);
	return r;
}

void q2rd_put(struct td_mread *r)
{
	struct q2 *q = r->drv;

	td_mread_release(r);
	td_pool_put(&q->rd_pool, r);
}
