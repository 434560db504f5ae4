/* Reads, writes and fdatasyncs of extent files: the shared file-I/O
 * request (tapdisk/block/fio.h) pointed at a file, which it remembers
 * (vmio_file).
 *
 * Each file has an O_DIRECT descriptor and a page-cache one. A piece goes
 * through O_DIRECT when its file offset, length and buffers are multiples
 * of 4096; anything else (grain tables at sector offsets, grains of
 * images whose grains are not 4 KiB aligned, compressed grains, flat
 * extents at odd offsets) through the page cache. Both reach the same
 * file, and an fdatasync on either makes both durable. Reads are clipped
 * at the end of the file: the rest reads as zeros. A short transfer
 * inside the file is an error (TD_FIO_SHORT_EIO). */
#include "tapdisk/vmdk/vmdk_int.h"

void vmio_read(struct td_fio *o, struct vmfile *f, uint64_t host)
{
	o->file = f;
	td_fio_read(o, f->fd, f->fd_buf, host, f->size);
}

void vmio_write(struct td_fio *o, struct vmfile *f, uint64_t host, bool dsync)
{
	o->file = f;
	td_fio_write(o, f->fd, f->fd_buf, host, dsync);
}

void vmio_fsync(struct td_fio *o, struct vmfile *f)
{
	o->file = f;
	td_fio_fsync(o, f->fd);
}
