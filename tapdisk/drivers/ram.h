/* The ram driver's spec: what follows "ram:".
 *
 *   ram:SIZE                       an anonymous RAM disk (a memfd)
 *   ram:NAME,size=SIZE[,shm=GROUP] a named one, TD_SHM_DIR/tdcrypt-NAME
 *
 * SIZE is a byte count with an optional K, M, G or T suffix (powers of
 * 1024), a multiple of 4 KiB. A NAME starts with a letter or '_' (so it is
 * never a size) and holds letters, digits, '_', '-' and '.', at most
 * TD_SHM_NAME_MAX characters. shm=GROUP lets GROUP map the named object
 * read-only (mode 0640); without it only its owner (root) can. */
#ifndef TD_RAM_H
#define TD_RAM_H

#include <stddef.h>
#include <stdint.h>

#include "tapdisk/block/files.h"

#define TD_RAM_MAX_SIZE (1ull << 44) /* 16 TiB: beyond any host's memory */

struct td_ram_spec {
	char name[TD_SHM_NAME_MAX + 1]; /* "" for an anonymous RAM disk */
	char group[64];			/* "" when no shm= */
	uint64_t size;
};

/* 0, or -EINVAL with a one-line reason that shows the expected form. */
int td_ram_parse(const char *path, struct td_ram_spec *out, char *err, size_t errlen);

#endif
