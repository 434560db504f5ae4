/* The crypt layer (crypt/drv_crypt.c): AES-256-XTS of every 4 KiB block,
 * keyed through the chain's key source, with the integrity layer its
 * authenticated header records inserted below it. */
#ifndef TD_CRYPT_H
#define TD_CRYPT_H

#include <stdbool.h>

#include "tapdisk/block/driver.h"

extern const struct td_driver td_drv_crypt;

/* crypt/grow.c: online grow (td_driver.grow), docs/FORMAT.md "Growing". */
int td_crypt_grow(struct td_layer *l, uint64_t new_size, char *err, size_t errlen);

#ifdef TD_TEST_BUILD
/* Test builds only: commit the new size in the header before the layers
 * below have grown (the wrong order), so that the grow simulator
 * (tests/tools/growsim.c) shows it notices. */
void td_crypt_grow_test_break(bool header_first);
/* the rotation's final switch records the trusted generation before the
 * header commit (reencsim --break gen-early) */
void td_crypt_reenc_test_gen_early(bool on);
#endif

#endif
