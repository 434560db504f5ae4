/* Reads, writes and fdatasyncs of the image files: the shared file-I/O
 * request (tapdisk/block/fio.h) pointed at a chain image. Every offset
 * and length is a multiple of 512 (the format's sector); each file has
 * one descriptor for all of it (O_DIRECT or not: vhd_image.c), so
 * page-cache and direct writes never meet on one page. A short transfer
 * is an error (TD_FIO_SHORT_EIO): the file is shorter than it was. */
#include "tapdisk/vhd/vhd_int.h"

static struct vhd *v_of(const struct td_fio *o)
{
	return o->drv;
}

void vio_read(struct td_fio *o, uint32_t img, uint64_t off)
{
	td_fio_read(o, v_of(o)->img[img]->fd, -1, off, TD_FIO_NO_EOF);
}

void vio_write(struct td_fio *o, uint64_t off, bool dsync)
{
	td_fio_write(o, v_of(o)->img[0]->fd, -1, off, dsync);
}

void vio_fsync(struct td_fio *o)
{
	td_fio_fsync(o, v_of(o)->img[0]->fd);
}
