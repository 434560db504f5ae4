/* Shared parts of the power-loss simulators: tests/lib/simkit.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypt/backend/secmem.h"
#include "crypt/backend/volkey.h"
#include "crypt/crypt.h"
#include "crypt/hdrio.h"
#include "integrity/integrity.h"
#include "tapdisk/block/chain.h"
#include "tapdisk/core/bufpool.h"
#include "tapdisk/core/io.h"
#include "tapdisk/core/workers.h"
#include "tests/drivers/record.h"
#include "tests/lib/simkit.h"

#define BS 4096u

uint64_t simkit_rnd(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void tick(void *opaque)
{
	struct simkit_env *e = opaque;

	td_loop_timer_arm(e->ctx.loop, &e->tick, 1000000);
}

int simkit_env_init(struct simkit_env *e)
{
	memset(e, 0, sizeof(*e));
	e->ctx.loop = td_loop_new();
	if (!e->ctx.loop)
		return -ENOMEM;
	e->ctx.io = td_io_new(e->ctx.loop, 64);
	e->ctx.workers = td_workers_new(e->ctx.loop, 0);
	e->ctx.stats = &e->stats;
	td_timer_init(&e->tick, tick, e);
	tick(e);
	return e->ctx.io && e->ctx.workers ? 0 : -ENOMEM;
}

int simkit_key_copy(const struct td_volkey *k, struct td_volkey **out, char *err, size_t errlen)
{
	*out = td_volkey_from_bytes(td_volkey_bytes(k), TD_VOLKEY_LEN);
	if (!*out) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

void simkit_pattern(uint8_t *p, uint64_t magic, uint64_t b)
{
	uint64_t w[BS / 8];
	unsigned i;

	for (i = 0; i < BS / 8; i++)
		w[i] = magic ^ (b * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)i << 48);
	memcpy(p, w, BS);
}

bool simkit_written(uint64_t b)
{
	return b % 3 == 0 && (b / 128) % 4 != 1;
}

int simkit_fill(struct simkit_env *e, const char *img, uint64_t magic, uint64_t *size,
		const char *prog)
{
	struct td_chain *c;
	char spec[4200], err[512];
	uint8_t *b = td_buf_get(BS);
	uint64_t blk;
	int rc;

	snprintf(spec, sizeof(spec), "crypt:aio:%s", img);
	rc = td_chain_open(&e->ctx, spec, &c, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "%s: open %s: %s\n", prog, spec, err);
		td_buf_put(b, BS);
		return rc;
	}
	*size = c->top->size;
	for (blk = 0; rc == 0 && blk < *size / BS; blk++) {
		if (!simkit_written(blk))
			continue;
		simkit_pattern(b, magic, blk);
		rc = td_layer_sync_io(c->top, TD_OP_WRITE, blk * BS, b, BS, 0);
	}
	if (rc == 0)
		rc = td_chain_close_sync(c);
	else
		td_chain_close(c);
	td_buf_put(b, BS);
	return rc;
}

int simkit_apply(int fd, const struct td_record_op *op, uint64_t upto)
{
	static uint8_t zeros[1 << 20];
	uint64_t done = 0, len = upto < op->len ? upto : op->len;

	if (op->op == TD_OP_WRITE)
		return pwrite(fd, op->data, (size_t)len, (off_t)op->off) == (ssize_t)len ? 0 : -EIO;
	if (op->op != TD_OP_WRITE_ZEROES && op->op != TD_OP_DISCARD)
		return 0;
	while (done < len) {
		size_t n = len - done < sizeof(zeros) ? (size_t)(len - done) : sizeof(zeros);

		if (pwrite(fd, zeros, n, (off_t)(op->off + done)) != (ssize_t)n)
			return -EIO;
		done += n;
	}
	return 0;
}

/* Copies the data extents of `from` (SEEK_DATA/SEEK_HOLE) into a fresh
 * `to` of the same size, in the kernel (copy_file_range) where it can: the
 * simulators copy the base image once per crash state, and most of it is
 * holes. */
static int copy_range(int in, int out, off_t off, off_t len)
{
	static uint8_t buf[1 << 20];
	off_t o = off, end = off + len;

	while (o < end) {
		off_t io = o, oo = o;
		ssize_t n = copy_file_range(in, &io, out, &oo, (size_t)(end - o), 0);

		if (n > 0) {
			o += n;
			continue;
		}
		if (n == 0)
			return -EIO;
		if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP)
			return -errno;
		/* no in-kernel copy here: through a buffer */
		n = pread(in, buf,
			  (size_t)(end - o < (off_t)sizeof(buf) ? end - o : (off_t)sizeof(buf)), o);
		if (n <= 0 || pwrite(out, buf, (size_t)n, o) != n)
			return -EIO;
		o += n;
	}
	return 0;
}

int simkit_copy_file(const char *from, const char *to, uint64_t size)
{
	int in = open(from, O_RDONLY), out = open(to, O_RDWR | O_CREAT | O_TRUNC, 0600);
	struct stat st;
	off_t data, hole = 0;
	int rc = 0;

	if (in < 0 || out < 0 || fstat(in, &st) < 0 || ftruncate(out, st.st_size) < 0)
		rc = -errno;
	while (rc == 0 && hole < st.st_size) {
		data = lseek(in, hole, SEEK_DATA);
		if (data < 0) {
			if (errno != ENXIO) /* ENXIO: only a hole is left */
				rc = -errno;
			break;
		}
		hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0)
			rc = -errno;
		else
			rc = copy_range(in, out, data, hole - data);
	}
	if (rc == 0 && size && ftruncate(out, (off_t)size) < 0)
		rc = -errno;
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return rc;
}

int simkit_format(struct simkit_env *e, const char *img, uint64_t size, int integrity,
		  const struct td_volkey *vk, const char *prog)
{
	struct td_crypt_hdr *h = calloc(1, sizeof(*h));
	struct td_chain *c = NULL;
	struct ti_params prm;
	char spec[4200], err[512] = "";
	uint8_t *mk = NULL;
	int fd, rc;

	fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (!h || fd < 0 || ftruncate(fd, (off_t)size) < 0) {
		if (fd >= 0)
			close(fd);
		free(h);
		return -EIO;
	}
	close(fd);
	snprintf(spec, sizeof(spec), "aio:%s", img);
	rc = td_chain_open(&e->ctx, spec, &c, err, sizeof(err));
	if (rc == 0)
		rc = td_hdr_init_new(h, c->top->size,
				     integrity ? TD_HDR_INTEGRITY_HMAC_SHA256
					       : TD_HDR_INTEGRITY_NONE);
	if (rc == 0 && integrity) {
		rc = ti_layout_version(c->top->size, h->data_offset, 16, (unsigned)integrity, &prm);
		h->data_size = prm.data_blocks * BS;
		ti_params_encode(&prm, h->integrity_params);
		mk = td_volkey_integrity_keys(vk);
		if (rc == 0)
			rc = mk ? ti_format(c->top, &prm, h->uuid, mk, err, sizeof(err)) : -ENOMEM;
	}
	if (rc == 0)
		rc = td_hdr_vk_digest(vk, h->vk_digest);
	h->seqno = 1;
	if (rc == 0)
		rc = td_hdr_seal(h, vk);
	if (rc == 0)
		rc = td_hdr_store(c->top, h, -1, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "%s: format: %s (%s)\n", prog, err, strerror(-rc));
	if (mk)
		td_secure_free(mk);
	if (c)
		td_chain_close(c);
	free(h);
	return rc;
}
