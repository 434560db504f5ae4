/* Guest -> file mapping down the chain, and the read path.
 *
 * A read is resolved piece by piece into extents (data at an offset of
 * some image of the chain, or zeros), neighbours merged so that data
 * contiguous in a file is one I/O. For each image, from the top down: past
 * its size reads zeros; a fixed disk is data; an unallocated block falls
 * through (differencing) or reads zeros (dynamic); in an allocated block
 * the bitmap decides per run of sectors, set bits being data and unset
 * ones falling through (differencing) or zeros (dynamic). Resolution
 * parks while a bitmap loads and resumes where it stopped. Every BAT
 * entry was checked at open (inside the file, clear of the metadata). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/core/log.h"
#include "tapdisk/core/util.h"
#include "tapdisk/vhd/vhd_int.h"

void v_log_bad(struct vhd *v, uint32_t img, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	td_image_vlog_bad(&v->log_left, "vhd", v->img[img]->path, " (further messages suppressed)",
			  fmt, ap);
	va_end(ap);
}

/* The first piece of guest bytes [g, g+n) (multiples of 512). */
static int v_map(struct vhd *v, uint64_t g, uint64_t n, struct td_wait *w, struct td_ext *out)
{
	memset(out, 0, sizeof(*out));
	for (uint32_t i = 0; i < v->nimg; i++) {
		struct vimg *im = v->img[i];
		uint64_t blk, in, host;
		uint32_t ent;
		struct vbm *e;
		bool set;
		int rc;

		if (g >= im->vsize)
			break; /* past the end of a smaller parent: zeros */
		if (n > im->vsize - g)
			n = im->vsize - g;
		if (im->fixed) {
			out->kind = TD_EXT_DATA;
			out->img = i;
			out->host = g;
			out->len = n;
			return 0;
		}
		blk = g >> im->h.block_bits;
		in = g & (im->h.block_size - 1);
		if (n > im->h.block_size - in)
			n = im->h.block_size - in;
		ent = v_bat(im, blk);
		if (ent == VHD_BAT_UNUSED) {
			if (im->diff)
				continue;
			break;
		}
		host = (uint64_t)ent * VHD_SECTOR + im->h.bitmap_bytes;
		rc = vbm_get(v, i, (uint32_t)blk, w, &e);
		if (rc < 0)
			return rc;
		if (e) {
			n = vhd_bitmap_run(e->buf, in / VHD_SECTOR, n / VHD_SECTOR, &set) *
			    VHD_SECTOR;
			if (!set) {
				if (im->diff)
					continue;
				break;
			}
		}
		out->kind = TD_EXT_DATA;
		out->img = i;
		out->host = host + in;
		out->len = n;
		return 0;
	}
	out->kind = TD_EXT_ZERO;
	out->len = n;
	return 0;
}

/* ---- the read state machine ------------------------------------------------ */

size_t v_read_state_size(void)
{
	return sizeof(struct td_mread);
}

static int map(struct td_mread *r, uint64_t g, uint64_t n, struct td_wait *w, struct td_ext *out)
{
	return v_map(r->drv, g, n, w, out);
}

static const struct td_mread_ops read_ops = {
    .map = map,
    .read = vio_read,
    .wait_eio = true,
};

static void read_done(struct td_mread *r, int err)
{
	struct vhd *v = r->drv;
	struct td_req *req = r->opaque;

	td_mread_release(r);
	td_pool_put(&v->rd_pool, r);
	td_req_complete(req, err);
}

void v_read(struct td_layer *l, struct td_req *req)
{
	struct vhd *v = l->priv;
	struct td_mread *r = td_pool_get(&v->rd_pool);

	if (!r) {
		td_req_complete_later(v->ctx, req, -ENOMEM);
		return;
	}
	td_mread_init(r, &read_ops, &v->fio);
	td_mread_req(r, req, read_done);
}
