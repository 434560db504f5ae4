#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "crypt/backend/secmem.h"
#include "keymgr/secret_input.h"

void td_secret_free(struct td_secret *s)
{
	if (s->buf)
		td_secure_free(s->buf);
	s->buf = NULL;
	s->len = 0;
}

static int read_fd_all(int fd, struct td_secret *s, char *err, size_t errlen)
{
	for (;;) {
		ssize_t n = read(fd, s->buf + s->len, TD_PASS_MAX + 1 - s->len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "cannot read the key: %s", strerror(errno));
			return -errno;
		}
		if (n == 0)
			break;
		s->len += (size_t)n;
		if (s->len > TD_PASS_MAX) {
			snprintf(err, errlen, "key file is larger than %d bytes", TD_PASS_MAX);
			return -EFBIG;
		}
	}
	return 0;
}

static int prompt_once(int tty, const char *prompt, char *buf, size_t *len, char *err,
		       size_t errlen)
{
	struct termios old, noecho;
	size_t n = 0;
	int rc = 0;

	if (tcgetattr(tty, &old) < 0) {
		snprintf(err, errlen, "cannot turn off echo on the terminal");
		return -ENOTTY;
	}
	noecho = old;
	noecho.c_lflag &= ~(tcflag_t)ECHO;
	noecho.c_lflag |= ECHONL;
	if (write(tty, prompt, strlen(prompt)) < 0 || tcsetattr(tty, TCSAFLUSH, &noecho) < 0) {
		snprintf(err, errlen, "cannot prompt on the terminal");
		return -EIO;
	}
	for (;;) {
		char c;
		ssize_t r = read(tty, &c, 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || c == '\n')
			break;
		if (n == TD_PASS_MAX) {
			rc = -EFBIG;
			snprintf(err, errlen, "passphrase longer than %d bytes", TD_PASS_MAX);
			continue;
		}
		buf[n++] = c;
	}
	tcsetattr(tty, TCSAFLUSH, &old);
	*len = n;
	return rc;
}

int td_secret_read(const char *file, const char *prompt, bool confirm, struct td_secret *out,
		   char *err, size_t errlen)
{
	char *again = NULL;
	size_t again_len = 0;
	int fd = -1, rc;

	out->len = 0;
	out->buf = td_secure_alloc(TD_PASS_MAX + 1);
	if (!out->buf) {
		snprintf(err, errlen, "out of secure memory");
		return -ENOMEM;
	}
	if (file) {
		fd = strcmp(file, "-") == 0 ? STDIN_FILENO : open(file, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			rc = -errno;
			snprintf(err, errlen, "cannot open key file '%s': %s", file,
				 strerror(errno));
			goto out;
		}
		rc = read_fd_all(fd, out, err, errlen);
		if (fd != STDIN_FILENO)
			close(fd);
		fd = -1;
	} else {
		fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
		if (fd < 0) {
			rc = -ENOTTY;
			snprintf(err, errlen,
				 "no terminal to ask for the passphrase: use --key-file FILE "
				 "(or - for standard input)");
			goto out;
		}
		rc = prompt_once(fd, prompt, out->buf, &out->len, err, errlen);
		if (!rc && confirm) {
			again = td_secure_alloc(TD_PASS_MAX + 1);
			rc = again ? prompt_once(fd, "Verify passphrase: ", again, &again_len, err,
						 errlen)
				   : -ENOMEM;
			if (!rc &&
			    (again_len != out->len || memcmp(again, out->buf, out->len) != 0)) {
				rc = -EINVAL;
				snprintf(err, errlen, "the passphrases do not match");
			}
		}
	}
	if (!rc && out->len == 0) {
		rc = -EINVAL;
		snprintf(err, errlen, "empty passphrase");
	}
out:
	if (fd >= 0 && fd != STDIN_FILENO)
		close(fd);
	if (again)
		td_secure_free(again);
	if (rc < 0)
		td_secret_free(out);
	return rc;
}
