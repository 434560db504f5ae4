/* Reads and writes of the image files: the shared file-I/O request
 * (tapdisk/block/fio.h) pointed at a chain image.
 *
 * Reads are clipped at the end of the file: what lies past it reads as
 * zeros (a backing file shorter than its cluster, a qcow2 file whose last
 * cluster was never written in full). Reads whose offset or length is not
 * a multiple of 4096 go through the page-cache descriptor, since O_DIRECT
 * cannot do them. Writes all go to the top image's main descriptor. */
#include "tapdisk/qcow2/qcow2_int.h"

static struct q2 *q_of(const struct td_fio *o)
{
	return o->drv;
}

void q2io_read(struct td_fio *o, uint32_t img, uint64_t host)
{
	struct q2img *im = q_of(o)->img[img];

	td_fio_read(o, im->fd, im->fd_buf, host, im->file_size);
}

void q2io_write(struct td_fio *o, uint64_t host)
{
	td_fio_write(o, q_of(o)->img[0]->fd, -1, host, false);
}

void q2io_write_dsync(struct td_fio *o, uint64_t host)
{
	td_fio_write(o, q_of(o)->img[0]->fd, -1, host, true);
}

void q2io_fsync(struct td_fio *o)
{
	td_fio_fsync(o, q_of(o)->img[0]->fd);
}
