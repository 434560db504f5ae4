/* Every file a driver chain opens goes through here.
 *
 * Image drivers never call open() themselves. They ask td_file_open() for
 * the image a spec names (the operator's path, symbolic links followed)
 * and td_file_open_named() for a file an image names (a qcow2 backing
 * file): an attacker writes those names, so they are confined
 * (struct td_confine):
 *   - only files beside the top image, or below a directory the host
 *     (tapdisk.conf backing-dirs) or the VBD (driver option backing-dir=)
 *     allows, compared by path as written after lexical normalization;
 *   - opened beneath that directory without following any symbolic link
 *     (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
 *   - with the credentials of the top image's owner (fsuid/fsgid), never
 *     more than that owner could read;
 *   - a regular file that belongs to root or to the top image's owner.
 * A refusal names the file and the rule.
 *
 * A tapdisk opens its chain as root and then drops its privileges. While
 * it is root, every file opened is also kept in the process's file table
 * (struct td_files). td_files_seal() ends that: from then on the table is
 * the only source of files. A driver that reopens its image after a pause
 * gets a duplicate of the descriptor opened as root, whatever the
 * directory's mode; a file nobody opened before the drop reaches the
 * tapdisk only from root, as a descriptor passed over the control socket
 * (td_files_add). Programs that build a chain without a table (vdkey, the
 * test tools) open directly, with the same confinement. */
#ifndef TD_FILES_H
#define TD_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

struct td_ctx;

#define TD_FILE_RW 0x1u	    /* read-write (else read-only) */
#define TD_FILE_DIRECT 0x2u /* O_DIRECT when the filesystem takes it */
#define TD_FILE_BLKDEV 0x4u /* a block device is acceptable too */

/* What an open hands back; fd belongs to the caller. */
struct td_file {
	int fd;
	bool direct; /* the descriptor is O_DIRECT */
	struct stat st;
};

#define TD_CONFINE_MAX_DIRS 20

/* Where files an image names may come from, and whose they may be. */
struct td_confine {
	int ndirs;
	char *dirs[TD_CONFINE_MAX_DIRS]; /* absolute, normalized; [0] = the top image's */
	uid_t owner;			 /* of the top image */
	gid_t group;
};

/* The confinement of the chain whose top image is top_path, opened as
 * top_fd. dirs: extra directories from the VBD's options (may be NULL);
 * the host's backing-dirs are added. -errno with a message. */
int td_confine_init(struct td_confine *c, const char *top_path, int top_fd, const char *const *dirs,
		    int ndirs, char *err, size_t errlen);
void td_confine_free(struct td_confine *c);

/* Opens the image a spec names. 0 or -errno with the reason (without the
 * path) in why. */
int td_file_open(struct td_ctx *ctx, const char *path, unsigned how, struct td_file *out, char *why,
		 size_t whylen);
/* Opens a file an image names; path is already resolved the way the
 * format resolves names (absolute, e.g. QEMU's "relative to the naming
 * image's directory"). */
int td_file_open_named(struct td_ctx *ctx, const struct td_confine *c, const char *path,
		       unsigned how, struct td_file *out, char *why, size_t whylen);

/* ---- the file table of a tapdisk ---------------------------------------- */

struct td_files;

struct td_files *td_files_new(void);
void td_files_free(struct td_files *f);
/* No more opening by path: only what the table holds (see above). */
void td_files_seal(struct td_files *f);
bool td_files_sealed(const struct td_files *f);
/* For tap-ctl, which opens a chain read-only to collect its files for a
 * tapdisk that writes: the image a spec names goes into the table
 * read-write. */
void td_files_set_upgrade_rw(struct td_files *f, bool on);
/* Adds a descriptor (ownership moves) under path, for requests of kind
 * how (TD_FILE_RW, TD_FILE_DIRECT as a driver would ask; TD_FILE_RW needs
 * a read-write descriptor). An entry with the same path and kind is
 * replaced: root's latest word wins. */
int td_files_add(struct td_files *f, const char *path, unsigned how, int fd, char *err,
		 size_t errlen);
size_t td_files_count(const struct td_files *f);
/* Entry i: its descriptor (still the table's), path and kind. */
int td_files_entry(const struct td_files *f, size_t i, const char **path, unsigned *how);

/* ---- memory images ------------------------------------------------------ */

/* A RAM disk (tapdisk/drivers/drv_ram.c) is shared memory: an anonymous
 * memfd, or a named object TD_SHM_DIR/tdcrypt-NAME. It is created (a
 * named one created or reopened) while the process may, and kept in the
 * file table like a file, under a key no spec path can spell: a pause
 * unmaps it, an unpause maps the same memory again. After td_files_seal
 * nothing is created, only the table's is handed back.
 *
 * A named object belongs to whoever creates it (root, for a tapdisk
 * started by root), mode 0600; with a group, 0640 and that group, so its
 * members may map it read-only for inspection. An existing object is
 * reused only when it is a regular file on tmpfs, has one link, belongs to
 * this process's user and has the size asked for (or 0: a fresh one). */
#define TD_SHM_DIR "/dev/shm"
#define TD_SHM_PREFIX "tdcrypt-"
#define TD_SHM_NAME_MAX 64

struct td_memfile {
	const char *name;  /* NULL: anonymous (memfd) */
	uint64_t size;	   /* bytes, > 0 */
	const char *group; /* named only: who may map it read-only; NULL: nobody */
};

/* 0 with out->fd (the caller's), or -errno with the reason in why. */
int td_file_memory(struct td_ctx *ctx, const struct td_memfile *m, unsigned how,
		   struct td_file *out, char *why, size_t whylen);

/* ---- identity ------------------------------------------------------------ */

#define TD_IMAGE_ID_LEN 16

/* What makes the open file this file and no other: the path the kernel
 * resolves it to, its device and inode (or device number), and the
 * filesystem's file handle, which also changes when an inode number is
 * reused. A byte copy, a renamed file or a file put in another's place
 * has another identity. where gets the path, for messages. */
int td_file_identity(int fd, uint8_t id[TD_IMAGE_ID_LEN], char *where, size_t wlen);
/* An identity from arbitrary bytes (e.g. a cluster image id). */
void td_image_id_from(const void *data, size_t len, uint8_t id[TD_IMAGE_ID_LEN]);

#endif
