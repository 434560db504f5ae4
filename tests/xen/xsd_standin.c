/*
 * xsd_standin — a TEST STAND-IN for xenstored.
 *
 * The real xenstored needs a hypervisor; this small server speaks the same
 * socket protocol (struct xsd_sockmsg + payload, Xen's public
 * xen/io/xs_wire.h) on a Unix socket so that programs linked against the
 * real, unchanged libxenstore can be tested without Xen: point them at it
 * with XENSTORED_PATH=SOCKET. It is not a xenstored replacement: no domains,
 * no permissions (GET_PERMS always answers "n0", SET_PERMS is accepted), no
 * quotas, everything runs as dom0.
 *
 * Model:
 * - one tree of nodes, each with a value; writes create missing parents;
 *   XS_RM removes a whole subtree; relative paths are relative to
 *   /local/domain/0, as for a dom0 client.
 * - watches fire XS_WATCH_EVENT(path, token) for a change at or below the
 *   watched node, for the removal of an ancestor of the watched node, and
 *   once when registered.
 * - transactions are optimistic: XS_TRANSACTION_START snapshots the whole
 *   tree; requests carrying that tx_id work on the snapshot; a commit
 *   succeeds only if no other change was committed meanwhile (otherwise
 *   EAGAIN, and clients retry as they do with xenstored), then replaces the
 *   tree and fires the watches of every path the transaction changed.
 *   Aborting discards the snapshot.
 * - single-threaded poll loop, any number of clients.
 *
 * Usage: xsd_standin SOCKET [-v]   (SIGTERM/SIGINT: remove the socket, exit 0)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <xen/io/xs_wire.h>

#define HOME "/local/domain/0"
#define MAX_CONNS 256

struct node {
	char *name;
	char *value;
	unsigned int vlen;
	struct node *children; /* singly linked, in creation order */
	struct node *next;
};

struct change {
	char *path;
	bool recurse; /* a removal: also fires watches below path */
	struct change *next;
};

struct txn {
	uint32_t id;
	int conn;
	uint64_t base_gen;
	struct node *root;
	struct change *changes;
	struct txn *next;
};

struct watch {
	int conn;
	char *path; /* as registered (may be relative) */
	char *abs;
	char *token;
	struct watch *next;
};

struct conn {
	int fd;
	struct xsd_sockmsg hdr;
	unsigned int got; /* bytes of header + body received */
	char body[XENSTORE_PAYLOAD_MAX + 1];
	char *out;
	size_t outlen, outcap;
};

static struct node *g_root;
static uint64_t g_gen;
static struct txn *g_txns;
static uint32_t g_next_txn = 1;
static struct watch *g_watches;
static struct conn *g_conns[MAX_CONNS];
static int g_verbose;
static volatile sig_atomic_t g_stop;

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "xsd_standin: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void *xmalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);
	if (!p) {
		logf_("out of memory");
		exit(1);
	}
	return p;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p) {
		logf_("out of memory");
		exit(1);
	}
	return p;
}

/* ---- tree ---------------------------------------------------------------- */

static struct node *node_new(const char *name)
{
	struct node *n = xmalloc(sizeof(*n));
	n->name = xstrdup(name);
	n->value = xstrdup("");
	return n;
}

static void node_free(struct node *n)
{
	while (n) {
		struct node *next = n->next;
		node_free(n->children);
		free(n->name);
		free(n->value);
		free(n);
		n = next;
	}
}

static struct node *node_copy(const struct node *n)
{
	struct node *head = NULL, **tail = &head;
	for (; n; n = n->next) {
		struct node *c = xmalloc(sizeof(*c));
		c->name = xstrdup(n->name);
		c->value = xmalloc(n->vlen + 1);
		memcpy(c->value, n->value, n->vlen);
		c->vlen = n->vlen;
		c->children = node_copy(n->children);
		*tail = c;
		tail = &c->next;
	}
	return head;
}

static struct node *child_of(struct node *n, const char *name, size_t len)
{
	for (struct node *c = n->children; c; c = c->next)
		if (strlen(c->name) == len && !memcmp(c->name, name, len))
			return c;
	return NULL;
}

/* Walks an absolute, validated path; creates missing nodes when asked. */
static struct node *walk(struct node *root, const char *path, bool create)
{
	struct node *n = root;
	const char *p = path + 1;
	while (*p) {
		const char *e = strchrnul(p, '/');
		struct node *c = child_of(n, p, e - p);
		if (!c) {
			if (!create)
				return NULL;
			char *name = strndup(p, e - p);
			c = node_new(name);
			free(name);
			struct node **t = &n->children;
			while (*t)
				t = &(*t)->next;
			*t = c;
		}
		n = c;
		p = *e ? e + 1 : e;
	}
	return n;
}

/* Unlinks and frees the node at path. Returns 0, -ENOENT or -EINVAL. */
static int tree_rm(struct node *root, const char *path)
{
	if (!strcmp(path, "/"))
		return -EINVAL;
	char *parent = xstrdup(path);
	char *slash = strrchr(parent, '/');
	const char *name = path + (slash - parent) + 1;
	if (slash == parent)
		slash[1] = 0;
	else
		*slash = 0;
	struct node *p = walk(root, parent, false);
	free(parent);
	if (!p)
		return -ENOENT; /* like xenstored: missing parent is an error */
	for (struct node **t = &p->children; *t; t = &(*t)->next) {
		if (!strcmp((*t)->name, name)) {
			struct node *victim = *t;
			*t = victim->next;
			victim->next = NULL;
			node_free(victim);
			return 0;
		}
	}
	return 0; /* missing node under an existing parent: success */
}

/* ---- paths ---------------------------------------------------------------- */

/* Canonical absolute form of a client path, or NULL if it is not valid. */
static char *canon_path(const char *p)
{
	if (*p == '@') /* special watch paths (@introduceDomain...) */
		return xstrdup(p);
	char *abs;
	if (*p == '/')
		abs = xstrdup(p);
	else if (asprintf(&abs, HOME "/%s", p) < 0)
		return NULL;
	size_t len = strlen(abs);
	bool bad = len > XENSTORE_ABS_PATH_MAX || strstr(abs, "//") ||
		   (len > 1 && abs[len - 1] == '/') || (*p != '/' && !*p);
	for (const char *c = abs; *c && !bad; c++)
		if (!(('a' <= *c && *c <= 'z') || ('A' <= *c && *c <= 'Z') ||
		      ('0' <= *c && *c <= '9') || strchr("/_-@", *c)))
			bad = true;
	if (bad) {
		free(abs);
		return NULL;
	}
	return abs;
}

/* true if child is parent or below it */
static bool is_at_or_below(const char *child, const char *parent)
{
	size_t pl = strlen(parent);
	if (!strcmp(parent, "/"))
		return child[0] == '/';
	return !strncmp(child, parent, pl) && (child[pl] == 0 || child[pl] == '/');
}

/* ---- connections and messages ---------------------------------------------- */

static void queue_out(struct conn *c, const void *d, size_t n)
{
	if (c->outlen + n > c->outcap) {
		size_t cap = (c->outlen + n) * 2;
		char *o = realloc(c->out, cap);
		if (!o) {
			logf_("out of memory");
			exit(1);
		}
		c->out = o;
		c->outcap = cap;
	}
	memcpy(c->out + c->outlen, d, n);
	c->outlen += n;
}

static void send_msg(struct conn *c, uint32_t type, uint32_t req_id, uint32_t tx_id,
		     const void *data, unsigned int len)
{
	struct xsd_sockmsg h = {.type = type, .req_id = req_id, .tx_id = tx_id, .len = len};
	queue_out(c, &h, sizeof(h));
	queue_out(c, data, len);
}

static void send_error(struct conn *c, int err)
{
	const char *name = "EINVAL";
	for (size_t i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++)
		if (xsd_errors[i].errnum == err)
			name = xsd_errors[i].errstring;
	send_msg(c, XS_ERROR, c->hdr.req_id, c->hdr.tx_id, name, strlen(name) + 1);
}

static void send_ok(struct conn *c)
{
	send_msg(c, c->hdr.type, c->hdr.req_id, c->hdr.tx_id, "OK", 3);
}

static void send_event(struct watch *w, const char *abs_path)
{
	const char *path = abs_path;
	if (w->path[0] != '/' && w->path[0] != '@' && is_at_or_below(abs_path, HOME))
		path = abs_path + strlen(HOME) + 1;
	size_t pl = strlen(path) + 1, tl = strlen(w->token) + 1;
	char *buf = xmalloc(pl + tl);
	memcpy(buf, path, pl);
	memcpy(buf + pl, w->token, tl);
	if (g_conns[w->conn])
		send_msg(g_conns[w->conn], XS_WATCH_EVENT, 0, 0, buf, pl + tl);
	free(buf);
}

static void fire(const char *path, bool recurse)
{
	for (struct watch *w = g_watches; w; w = w->next) {
		if (is_at_or_below(path, w->abs))
			send_event(w, path);
		else if (recurse && is_at_or_below(w->abs, path))
			send_event(w, w->abs);
	}
}

/* Records a change: fired now, or at commit time inside a transaction. */
static void changed(struct txn *t, const char *path, bool recurse)
{
	if (!t) {
		g_gen++;
		fire(path, recurse);
		return;
	}
	struct change *ch = xmalloc(sizeof(*ch));
	ch->path = xstrdup(path);
	ch->recurse = recurse;
	struct change **tail = &t->changes;
	while (*tail)
		tail = &(*tail)->next;
	*tail = ch;
}

static void txn_free(struct txn *t)
{
	node_free(t->root);
	while (t->changes) {
		struct change *n = t->changes->next;
		free(t->changes->path);
		free(t->changes);
		t->changes = n;
	}
	free(t);
}

static void txn_unlink(struct txn *t)
{
	for (struct txn **p = &g_txns; *p; p = &(*p)->next)
		if (*p == t) {
			*p = t->next;
			return;
		}
}

/* Splits a payload into up to max NUL-terminated strings. Returns the count. */
static int split(char *body, unsigned int len, char **v, int max)
{
	int n = 0;
	unsigned int i = 0;
	body[len] = 0;
	while (i < len && n < max) {
		v[n++] = body + i;
		i += strlen(body + i) + 1;
	}
	return n;
}

static const char *type_name(uint32_t t)
{
	static const char *names[] = {
	    [XS_CONTROL] = "CONTROL",
	    [XS_DIRECTORY] = "DIRECTORY",
	    [XS_READ] = "READ",
	    [XS_GET_PERMS] = "GET_PERMS",
	    [XS_WATCH] = "WATCH",
	    [XS_UNWATCH] = "UNWATCH",
	    [XS_TRANSACTION_START] = "TRANSACTION_START",
	    [XS_TRANSACTION_END] = "TRANSACTION_END",
	    [XS_INTRODUCE] = "INTRODUCE",
	    [XS_RELEASE] = "RELEASE",
	    [XS_GET_DOMAIN_PATH] = "GET_DOMAIN_PATH",
	    [XS_WRITE] = "WRITE",
	    [XS_MKDIR] = "MKDIR",
	    [XS_RM] = "RM",
	    [XS_SET_PERMS] = "SET_PERMS",
	    [XS_WATCH_EVENT] = "WATCH_EVENT",
	    [XS_ERROR] = "ERROR",
	    [XS_IS_DOMAIN_INTRODUCED] = "IS_DOMAIN_INTRODUCED",
	    [XS_RESUME] = "RESUME",
	    [XS_SET_TARGET] = "SET_TARGET",
	    [XS_RESET_WATCHES] = "RESET_WATCHES",
	    [XS_DIRECTORY_PART] = "DIRECTORY_PART",
	};
	if (t < sizeof(names) / sizeof(names[0]) && names[t])
		return names[t];
	return "?";
}

static void handle(int ci)
{
	struct conn *c = g_conns[ci];
	struct xsd_sockmsg *h = &c->hdr;
	char *arg[3] = {NULL, NULL, NULL};
	char *path = NULL;
	struct txn *t = NULL;
	int n = split(c->body, h->len, arg, h->type == XS_WRITE ? 1 : 3);

	if (g_verbose)
		logf_("conn %d: %s %s tx=%u", ci, type_name(h->type), n ? arg[0] : "", h->tx_id);
	if (h->tx_id && h->type != XS_TRANSACTION_START) {
		for (t = g_txns; t && !(t->id == h->tx_id && t->conn == ci); t = t->next)
			;
		if (!t) {
			send_error(c, ENOENT);
			return;
		}
	}
	struct node *root = t ? t->root : g_root;

	switch (h->type) {
	case XS_READ:
	case XS_DIRECTORY:
	case XS_GET_PERMS:
	case XS_WRITE:
	case XS_MKDIR:
	case XS_RM:
	case XS_SET_PERMS:
	case XS_WATCH:
	case XS_UNWATCH:
		if (n < 1 || !(path = canon_path(arg[0]))) {
			send_error(c, EINVAL);
			goto out;
		}
		if (path[0] == '@' && h->type != XS_WATCH && h->type != XS_UNWATCH) {
			send_error(c, EINVAL);
			goto out;
		}
		break;
	default:
		break;
	}

	switch (h->type) {
	case XS_READ: {
		struct node *nd = walk(root, path, false);
		if (!nd)
			send_error(c, ENOENT);
		else
			send_msg(c, h->type, h->req_id, h->tx_id, nd->value, nd->vlen);
		break;
	}
	case XS_DIRECTORY: {
		struct node *nd = walk(root, path, false);
		if (!nd) {
			send_error(c, ENOENT);
			break;
		}
		size_t len = 0;
		for (struct node *k = nd->children; k; k = k->next)
			len += strlen(k->name) + 1;
		if (len > XENSTORE_PAYLOAD_MAX) {
			send_error(c, E2BIG);
			break;
		}
		char *buf = xmalloc(len), *p = buf;
		for (struct node *k = nd->children; k; k = k->next)
			p = stpcpy(p, k->name) + 1;
		send_msg(c, h->type, h->req_id, h->tx_id, buf, len);
		free(buf);
		break;
	}
	case XS_GET_PERMS:
		if (!walk(root, path, false))
			send_error(c, ENOENT);
		else
			send_msg(c, h->type, h->req_id, h->tx_id, "n0", 3);
		break;
	case XS_SET_PERMS:
		if (!walk(root, path, false)) {
			send_error(c, ENOENT);
			break;
		}
		changed(t, path, false);
		send_ok(c);
		break;
	case XS_WRITE: {
		unsigned int off = strlen(arg[0]) + 1;
		unsigned int vlen = h->len > off ? h->len - off : 0;
		struct node *nd = walk(root, path, true);
		free(nd->value);
		nd->value = xmalloc(vlen + 1);
		memcpy(nd->value, c->body + off, vlen);
		nd->vlen = vlen;
		changed(t, path, false);
		send_ok(c);
		break;
	}
	case XS_MKDIR:
		if (!walk(root, path, false)) {
			walk(root, path, true);
			changed(t, path, false);
		}
		send_ok(c);
		break;
	case XS_RM: {
		bool existed = walk(root, path, false) != NULL;
		int r = tree_rm(root, path);
		if (r) {
			send_error(c, -r);
			break;
		}
		if (existed)
			changed(t, path, true);
		send_ok(c);
		break;
	}
	case XS_WATCH: {
		if (n < 2) {
			send_error(c, EINVAL);
			break;
		}
		for (struct watch *w = g_watches; w; w = w->next)
			if (w->conn == ci && !strcmp(w->path, arg[0]) &&
			    !strcmp(w->token, arg[1])) {
				send_error(c, EEXIST);
				goto out;
			}
		struct watch *w = xmalloc(sizeof(*w));
		w->conn = ci;
		w->path = xstrdup(arg[0]);
		w->abs = path;
		path = NULL;
		w->token = xstrdup(arg[1]);
		w->next = g_watches;
		g_watches = w;
		send_ok(c);
		send_event(w, w->abs); /* a new watch fires once */
		break;
	}
	case XS_UNWATCH: {
		if (n < 2) {
			send_error(c, EINVAL);
			break;
		}
		for (struct watch **p = &g_watches; *p; p = &(*p)->next) {
			struct watch *w = *p;
			if (w->conn == ci && !strcmp(w->path, arg[0]) &&
			    !strcmp(w->token, arg[1])) {
				*p = w->next;
				free(w->path);
				free(w->abs);
				free(w->token);
				free(w);
				send_ok(c);
				goto out;
			}
		}
		send_error(c, ENOENT);
		break;
	}
	case XS_RESET_WATCHES:
		for (struct watch **p = &g_watches; *p;) {
			struct watch *w = *p;
			if (w->conn != ci) {
				p = &w->next;
				continue;
			}
			*p = w->next;
			free(w->path);
			free(w->abs);
			free(w->token);
			free(w);
		}
		send_ok(c);
		break;
	case XS_TRANSACTION_START: {
		if (h->tx_id) {
			send_error(c, EBUSY);
			break;
		}
		struct txn *nt = xmalloc(sizeof(*nt));
		nt->id = g_next_txn++;
		if (!g_next_txn)
			g_next_txn = 1;
		nt->conn = ci;
		nt->base_gen = g_gen;
		nt->root = node_copy(g_root);
		nt->next = g_txns;
		g_txns = nt;
		char id[16];
		snprintf(id, sizeof(id), "%u", nt->id);
		send_msg(c, h->type, h->req_id, 0, id, strlen(id) + 1);
		break;
	}
	case XS_TRANSACTION_END: {
		if (!t) {
			send_error(c, EINVAL);
			break;
		}
		txn_unlink(t);
		if (n >= 1 && !strcmp(arg[0], "T")) {
			if (t->base_gen != g_gen) {
				txn_free(t);
				send_error(c, EAGAIN);
				break;
			}
			struct node *old = g_root;
			g_root = t->root;
			t->root = old;
			if (t->changes)
				g_gen++;
			for (struct change *ch = t->changes; ch; ch = ch->next)
				fire(ch->path, ch->recurse);
		}
		txn_free(t);
		send_ok(c);
		break;
	}
	case XS_GET_DOMAIN_PATH: {
		char p[64];
		snprintf(p, sizeof(p), "/local/domain/%u",
			 n ? (unsigned)strtoul(arg[0], NULL, 10) : 0);
		send_msg(c, h->type, h->req_id, h->tx_id, p, strlen(p) + 1);
		break;
	}
	case XS_IS_DOMAIN_INTRODUCED:
		send_msg(c, h->type, h->req_id, h->tx_id, "T", 2);
		break;
	default:
		logf_("conn %d: unsupported message type %u (%s): ENOSYS", ci, h->type,
		      type_name(h->type));
		send_error(c, ENOSYS);
		break;
	}
out:
	free(path);
}

static void conn_close(int ci)
{
	struct conn *c = g_conns[ci];
	for (struct watch **p = &g_watches; *p;) {
		struct watch *w = *p;
		if (w->conn != ci) {
			p = &w->next;
			continue;
		}
		*p = w->next;
		free(w->path);
		free(w->abs);
		free(w->token);
		free(w);
	}
	for (struct txn **p = &g_txns; *p;) {
		struct txn *t = *p;
		if (t->conn != ci) {
			p = &t->next;
			continue;
		}
		*p = t->next;
		txn_free(t);
	}
	close(c->fd);
	free(c->out);
	free(c);
	g_conns[ci] = NULL;
	if (g_verbose)
		logf_("conn %d closed", ci);
}

/* Reads what is available; handles every complete message. false = close. */
static bool conn_read(int ci)
{
	struct conn *c = g_conns[ci];
	for (;;) {
		size_t want;
		char *dst;
		if (c->got < sizeof(c->hdr)) {
			want = sizeof(c->hdr) - c->got;
			dst = (char *)&c->hdr + c->got;
		} else {
			want = sizeof(c->hdr) + c->hdr.len - c->got;
			dst = c->body + (c->got - sizeof(c->hdr));
		}
		if (want) {
			ssize_t r = read(c->fd, dst, want);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				return true;
			if (r <= 0)
				return false;
			c->got += r;
			if ((size_t)r < want)
				continue;
		}
		if (c->got == sizeof(c->hdr) && c->hdr.len > XENSTORE_PAYLOAD_MAX) {
			logf_("conn %d: payload of %u bytes is over the limit", ci, c->hdr.len);
			return false;
		}
		if (c->got == sizeof(c->hdr) + c->hdr.len) {
			handle(ci);
			c->got = 0;
		}
	}
}

static bool conn_write(struct conn *c)
{
	while (c->outlen) {
		ssize_t w = write(c->fd, c->out, c->outlen);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			return true;
		if (w <= 0)
			return false;
		memmove(c->out, c->out + w, c->outlen - w);
		c->outlen -= w;
	}
	return true;
}

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

int main(int argc, char **argv)
{
	const char *sockpath = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-v"))
			g_verbose = 1;
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			printf("Usage: xsd_standin SOCKET [-v]\n"
			       "A TEST STAND-IN for xenstored: serves the xenstore socket protocol "
			       "on\n"
			       "SOCKET for clients using libxenstore with XENSTORED_PATH=SOCKET.\n"
			       "-v logs every request to stderr. SIGTERM: exit 0.\n");
			return 0;
		} else if (!sockpath)
			sockpath = argv[i];
		else {
			fprintf(stderr, "xsd_standin: unexpected argument '%s'\n", argv[i]);
			return 2;
		}
	}
	if (!sockpath) {
		fprintf(stderr, "Usage: xsd_standin SOCKET [-v]\n");
		return 2;
	}
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(sockpath) >= sizeof(sa.sun_path)) {
		logf_("socket path '%s' is too long", sockpath);
		return 1;
	}
	strcpy(sa.sun_path, sockpath);
	signal(SIGPIPE, SIG_IGN);
	struct sigaction act = {.sa_handler = on_signal};
	sigaction(SIGTERM, &act, NULL);
	sigaction(SIGINT, &act, NULL);

	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	unlink(sockpath);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 64)) {
		logf_("cannot listen on %s: %s", sockpath, strerror(errno));
		return 1;
	}
	g_root = node_new("");
	/* what a freshly booted dom0 store has */
	walk(g_root, HOME, true);
	walk(g_root, "/tool", true);
	logf_("TEST STAND-IN for xenstored listening on %s", sockpath);

	while (!g_stop) {
		struct pollfd pfd[MAX_CONNS + 1];
		int idx[MAX_CONNS + 1], np = 0;
		pfd[np] = (struct pollfd){.fd = lfd, .events = POLLIN};
		idx[np++] = -1;
		for (int i = 0; i < MAX_CONNS; i++) {
			if (!g_conns[i])
				continue;
			pfd[np] =
			    (struct pollfd){.fd = g_conns[i]->fd,
					    .events = POLLIN | (g_conns[i]->outlen ? POLLOUT : 0)};
			idx[np++] = i;
		}
		if (poll(pfd, np, -1) < 0) {
			if (errno == EINTR)
				continue;
			logf_("poll: %s", strerror(errno));
			break;
		}
		for (int k = 1; k < np; k++) {
			int ci = idx[k];
			if (!g_conns[ci] || !pfd[k].revents)
				continue;
			bool ok = true;
			if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR))
				ok = conn_read(ci);
			if (!ok) {
				conn_close(ci);
				continue;
			}
		}
		/* flush replies and events, including events for other clients */
		for (int i = 0; i < MAX_CONNS; i++)
			if (g_conns[i] && g_conns[i]->outlen && !conn_write(g_conns[i]))
				conn_close(i);
		if (pfd[0].revents & POLLIN) {
			int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
			if (fd < 0)
				continue;
			int i = 0;
			while (i < MAX_CONNS && g_conns[i])
				i++;
			if (i == MAX_CONNS) {
				logf_("too many clients");
				close(fd);
				continue;
			}
			g_conns[i] = xmalloc(sizeof(struct conn));
			g_conns[i]->fd = fd;
			if (g_verbose)
				logf_("conn %d opened", i);
		}
	}
	unlink(sockpath);
	logf_("stopped");
	return 0;
}
