/*
 * pam_vxvdex: put a managed user's session into their vxvdex network namespace.
 *
 * pam_sm_open_session asks vxvdexd, over its control socket (one
 * SOCK_SEQPACKET message each way, see vxvdex/control.py), to open a session:
 * the daemon answers "unmanaged TEXT", "error CODE TEXT", or "ok NETNS" with
 * the namespace attached as a descriptor (SCM_RIGHTS). We setns() into it, so
 * the login shell and everything it starts live there.
 *
 * Fail closed: a managed user must never silently land on the host network.
 * Every failure is PAM_SESSION_ERR, a daemon that cannot be reached included
 * (we cannot know whether the user is managed), except for root, whom the
 * daemon never manages and who must be able to log in to repair it.
 *
 * No fork, no exec, no helper: only libc and libpam.
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <pwd.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <security/pam_modutil.h>

#define VXVDEX_SOCKET "/run/vxvdex/control"
#define VXVDEX_TIMEOUT 10		/* seconds before a silent daemon fails the login */
#define VXVDEX_MAX_MESSAGE 4096		/* one request or answer (control.py) */
#define VXVDEX_WORD_MAX 64		/* user and session names (control.py WORD_RE) */
#define VXVDEX_WORD_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.@$-"
#define VXVDEX_DATA "pam_vxvdex_close"	/* the close request, kept for close_session */

struct vxvdex_opts {
	int debug;
	int mountns;
	int timeout;
	const char *socket;
};

/* Parse module arguments into o; unknown ones are logged and ignored. Returns nothing. */
static void vxvdex_parse(pam_handle_t *pamh, int argc, const char **argv, struct vxvdex_opts *o)
{
	char *end;
	long n;

	o->debug = 0;
	o->mountns = 0;
	o->timeout = VXVDEX_TIMEOUT;
	o->socket = VXVDEX_SOCKET;
	for (; argc-- > 0; argv++) {
		if (strcmp(*argv, "debug") == 0)
			o->debug = 1;
		else if (strcmp(*argv, "mountns") == 0)
			o->mountns = 1;
		else if (strncmp(*argv, "socket=", 7) == 0 && (*argv)[7] == '/')
			o->socket = *argv + 7;
		else if (strncmp(*argv, "timeout=", 8) == 0 &&
			 (n = strtol(*argv + 8, &end, 10)) >= 1 && n <= 600 && *end == '\0')
			o->timeout = (int)n;
		else
			pam_syslog(pamh, LOG_ERR, "unknown or bad option: %s", *argv);
	}
}

/* Returns 1 if s is 1 to max characters of A-Z a-z 0-9 _ . @ $ - (and not "." or ".."), else 0. */
static int vxvdex_is_word(const char *s, size_t max)
{
	size_t n = strspn(s, VXVDEX_WORD_CHARS);

	return n >= 1 && n <= max && s[n] == '\0' && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* Log why the session is refused and tell the user (unless PAM_SILENT). Returns PAM_SESSION_ERR. */
__attribute__((format(printf, 3, 4)))
static int vxvdex_fail(pam_handle_t *pamh, int flags, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	pam_syslog(pamh, LOG_ERR, "%s", text);
	if (!(flags & PAM_SILENT))
		pam_error(pamh, "vxvdex: %s", text);
	return PAM_SESSION_ERR;
}

/* Write a session id, the sanitized PAM_TTY and our pid ("pts.3-4242"), into buf. Returns nothing. */
static void vxvdex_session_id(pam_handle_t *pamh, char *buf, size_t len)
{
	const void *item = NULL;
	const char *tty;
	char clean[24] = "notty";
	size_t i;

	if (pam_get_item(pamh, PAM_TTY, &item) == PAM_SUCCESS && item && *(const char *)item) {
		tty = item;
		if (strncmp(tty, "/dev/", 5) == 0)
			tty += 5;
		for (i = 0; tty[i] && i < sizeof(clean) - 1; i++)
			clean[i] = strchr(VXVDEX_WORD_CHARS, tty[i]) ? tty[i] : '.';
		clean[i] = '\0';
	}
	snprintf(buf, len, "%s-%ld", clean, (long)getpid());
}

/* Returns 0 if the socket's peer runs as root (only root can be vxvdexd), else -1 with errno set. */
static int vxvdex_peer_is_root(int sock)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
		return -1;
	if (cred.uid != 0) {
		errno = EPERM;
		return -1;
	}
	return 0;
}

/* Connect to the daemon with send and receive timeouts. Returns the socket, or -1 with errno set. */
static int vxvdex_connect(const struct vxvdex_opts *o)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = o->timeout };
	int sock, err;

	if (strlen(o->socket) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sa.sun_path, o->socket);
	sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return -1;
	/* SO_SNDTIMEO also bounds connect() on a UNIX socket whose backlog is full. */
	if (setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0 &&
	    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0 &&
	    connect(sock, (struct sockaddr *)&sa, sizeof(sa)) == 0 && vxvdex_peer_is_root(sock) == 0)
		return sock;
	err = errno;
	close(sock);
	errno = err;
	return -1;
}

/*
 * Send one request; receive the answer into buf (NUL-terminated, trailing
 * newline removed) and at most one descriptor into *fd (-1 if none).
 * Returns 0, or -1 with errno set (EAGAIN: timed out; EPROTO: bad answer).
 */
static int vxvdex_ask(const struct vxvdex_opts *o, const char *req, char *buf, size_t len, int *fd)
{
	union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(int))]; } ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = len - 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
	struct cmsghdr *c;
	ssize_t n = -1;
	int sock, err;

	*fd = -1;
	sock = vxvdex_connect(o);
	if (sock < 0)
		return -1;
	if (send(sock, req, strlen(req), MSG_NOSIGNAL) >= 0)
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	err = n < 0 ? errno : n == 0 ? ECONNRESET : 0;
	close(sock);
	c = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
	if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
	    c->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(fd, CMSG_DATA(c), sizeof(int));
	if (!err && (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
		err = EPROTO;
	if (err) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		errno = err;
		return -1;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/* Returns the rest of answer after its first word if that word is `word` ("" if nothing follows), else NULL. */
static const char *vxvdex_rest(const char *answer, const char *word)
{
	size_t n = strlen(word);

	if (strncmp(answer, word, n) != 0 || (answer[n] != ' ' && answer[n] != '\0'))
		return NULL;
	return answer[n] ? answer + n + 1 : answer + n;
}

/* Returns 1 if st is root's and only root may write it, else 0. */
static int vxvdex_roots(const struct stat *st)
{
	return st->st_uid == 0 && !(st->st_mode & (S_IWGRP | S_IWOTH));
}

/* Opens dir/name (no link followed) as a directory only root may change. Returns an fd, or -1. */
static int vxvdex_open_roots_dir(int dir, const char *name)
{
	struct stat st;
	int fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd >= 0 && (fstat(fd, &st) != 0 || !vxvdex_roots(&st))) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Bind /etc/netns/NAME/x over /etc/x for each x, as `ip netns exec` does, but
 * only what is root's: no link is followed (not in the path either), and a
 * file or directory that another user owns or may write is skipped, so no
 * user gets a file of their choice over /etc. Returns nothing (logged).
 */
static void vxvdex_bind_etc(pam_handle_t *pamh, const char *name)
{
	char src[64], dst[320];
	struct dirent *e;
	struct stat st;
	int etc, dir, fd;
	DIR *d;

	etc = vxvdex_open_roots_dir(AT_FDCWD, "/etc/netns");
	if (etc < 0)
		return;
	dir = vxvdex_open_roots_dir(etc, name);
	close(etc);
	if (dir < 0)
		return;
	d = fdopendir(dir);
	if (d == NULL) {
		close(dir);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		fd = openat(dirfd(d), e->d_name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) || !vxvdex_roots(&st)) {
			pam_syslog(pamh, LOG_WARNING, "not binding /etc/netns/%s/%s: not a file or directory "
				   "only root may write", name, e->d_name);
			close(fd);
			continue;
		}
		snprintf(src, sizeof(src), "/proc/self/fd/%d", fd);
		snprintf(dst, sizeof(dst), "/etc/%s", e->d_name);
		if (mount(src, dst, "none", MS_BIND, NULL) != 0)
			pam_syslog(pamh, LOG_WARNING, "bind /etc/netns/%s/%s over %s: %m", name, e->d_name, dst);
		close(fd);
	}
	closedir(d);
}

/*
 * Give the session its own mount namespace, a slave of the host's, in which
 * /sys is a sysfs of the current network namespace (so /sys/class/net shows
 * its interfaces) and /etc/netns/NAME/x is bound over /etc/x. /sys/fs/cgroup
 * is carried over; other submounts of /sys are not (as with `ip netns exec`).
 * Returns 0, or -1 after logging.
 */
static int vxvdex_mountns(pam_handle_t *pamh, const char *name)
{
	unsigned long flags = 0;
	struct statvfs st;
	int cgroup;

	if (unshare(CLONE_NEWNS) != 0) {
		pam_syslog(pamh, LOG_ERR, "unshare(CLONE_NEWNS): %m");
		return -1;
	}
	if (mount("", "/", "none", MS_SLAVE | MS_REC, NULL) != 0) {
		pam_syslog(pamh, LOG_ERR, "making / a slave mount: %m");
		return -1;
	}
	if (statvfs("/sys", &st) == 0 && (st.f_flag & ST_RDONLY))
		flags = MS_RDONLY;
	cgroup = open_tree(AT_FDCWD, "/sys/fs/cgroup", OPEN_TREE_CLONE | AT_RECURSIVE | OPEN_TREE_CLOEXEC);
	if (umount2("/sys", MNT_DETACH) != 0 && errno != EINVAL)
		pam_syslog(pamh, LOG_WARNING, "unmounting /sys: %m");
	if (mount(name, "/sys", "sysfs", flags, NULL) != 0) {
		pam_syslog(pamh, LOG_ERR, "mounting a sysfs for %s on /sys: %m", name);
		if (cgroup >= 0)
			close(cgroup);
		return -1;
	}
	if (cgroup >= 0) {
		if (move_mount(cgroup, "", AT_FDCWD, "/sys/fs/cgroup", MOVE_MOUNT_F_EMPTY_PATH) != 0)
			pam_syslog(pamh, LOG_WARNING, "carrying /sys/fs/cgroup over: %m");
		close(cgroup);
	}
	vxvdex_bind_etc(pamh, name);
	return 0;
}

/* pam_set_data cleanup for the kept close request. Returns nothing. */
static void vxvdex_free(pam_handle_t *pamh, void *data, int error_status)
{
	(void)pamh;
	(void)error_status;
	free(data);
}

/* Tell the daemon that a session ended (req is "close USER SESSION"). Returns 0, or -1 after logging. */
static int vxvdex_close(pam_handle_t *pamh, const struct vxvdex_opts *o, const char *req)
{
	char answer[VXVDEX_MAX_MESSAGE + 1];
	int fd;

	if (vxvdex_ask(o, req, answer, sizeof(answer), &fd) != 0) {
		pam_syslog(pamh, LOG_WARNING, "%s: vxvdexd at %s: %m", req, o->socket);
		return -1;
	}
	if (fd >= 0)
		close(fd);
	if (vxvdex_rest(answer, "ok") == NULL) {
		pam_syslog(pamh, LOG_WARNING, "%s: vxvdexd answered: %.200s", req, answer);
		return -1;
	}
	if (o->debug)
		pam_syslog(pamh, LOG_DEBUG, "%s: done", req);
	return 0;
}

/* The daemon could not be asked. Returns PAM_IGNORE for root, else PAM_SESSION_ERR (fail closed). */
static int vxvdex_unreachable(pam_handle_t *pamh, int flags, const struct vxvdex_opts *o,
			      const char *user, int err)
{
	struct passwd *pw = pam_modutil_getpwnam(pamh, user);

	if (pw != NULL && pw->pw_uid == 0) {
		pam_syslog(pamh, LOG_WARNING, "vxvdexd at %s: %s; %s keeps the host network",
			   o->socket, strerror(err), user);
		return PAM_IGNORE;
	}
	return vxvdex_fail(pamh, flags, "cannot reach vxvdexd at %s (%s): refusing the session of %s, "
			   "who may be a managed user", o->socket, strerror(err), user);
}

/*
 * Act on the daemon's answer to "open USER SESSION" (nsfd: the descriptor it
 * passed, or -1). Returns PAM_SUCCESS (now in the namespace), PAM_IGNORE
 * (unmanaged) or PAM_SESSION_ERR.
 */
static int vxvdex_enter(pam_handle_t *pamh, int flags, const struct vxvdex_opts *o,
			const char *user, const char *sid, const char *answer, int nsfd)
{
	char req[160], env[300];
	const char *name;

	if ((name = vxvdex_rest(answer, "unmanaged")) != NULL) {
		if (o->debug)
			pam_syslog(pamh, LOG_DEBUG, "%s is not managed: %.200s", user, name);
		return PAM_IGNORE;
	}
	if ((name = vxvdex_rest(answer, "error")) != NULL)
		return vxvdex_fail(pamh, flags, "vxvdexd refused a network for %s: %.300s", user, name);
	name = vxvdex_rest(answer, "ok");
	if (name == NULL || nsfd < 0 || !vxvdex_is_word(name, 255))
		return vxvdex_fail(pamh, flags, "unexpected answer from vxvdexd for %s: %.200s", user, answer);
	snprintf(req, sizeof(req), "close %s %s", user, sid);
	if (setns(nsfd, CLONE_NEWNET) != 0 || (o->mountns && vxvdex_mountns(pamh, name) != 0)) {
		pam_syslog(pamh, LOG_ERR, "entering %s: %m", name);
		vxvdex_close(pamh, o, req);
		return vxvdex_fail(pamh, flags, "cannot enter the network namespace %s of %s", name, user);
	}
	if (pam_set_data(pamh, VXVDEX_DATA, strdup(req), vxvdex_free) != PAM_SUCCESS)
		pam_syslog(pamh, LOG_WARNING, "cannot keep the session id; close_session will not tell vxvdexd");
	snprintf(env, sizeof(env), "VXVDEX_NETNS=%s", name);
	pam_putenv(pamh, env);
	if (o->debug)
		pam_syslog(pamh, LOG_DEBUG, "session %s of %s entered %s", sid, user, name);
	return PAM_SUCCESS;
}

/*
 * Returns PAM_SUCCESS when the calling process is now in the user's network
 * namespace; PAM_IGNORE when the user is not managed (or is root and vxvdexd
 * cannot be reached); PAM_SESSION_ERR when the user is, or may be, managed
 * and could not be given their namespace.
 */
PAM_EXTERN int pam_sm_open_session(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	char sid[48], req[160], answer[VXVDEX_MAX_MESSAGE + 1];
	struct vxvdex_opts o;
	const void *item = NULL;
	const char *user;
	int nsfd, ret;

	vxvdex_parse(pamh, argc, argv, &o);
	if (pam_get_item(pamh, PAM_USER, &item) != PAM_SUCCESS || item == NULL)
		return vxvdex_fail(pamh, flags, "no user name for the session");
	user = item;
	if (!vxvdex_is_word(user, VXVDEX_WORD_MAX))
		return vxvdex_fail(pamh, flags, "a user name vxvdexd cannot handle "
				   "(it must be 1-64 of A-Z a-z 0-9 _ . @ $ -)");
	vxvdex_session_id(pamh, sid, sizeof(sid));
	snprintf(req, sizeof(req), "open %s %s", user, sid);
	if (vxvdex_ask(&o, req, answer, sizeof(answer), &nsfd) != 0)
		return vxvdex_unreachable(pamh, flags, &o, user, errno);
	ret = vxvdex_enter(pamh, flags, &o, user, sid, answer, nsfd);
	if (nsfd >= 0)
		close(nsfd);
	return ret;
}

/*
 * Returns PAM_SUCCESS when vxvdexd closed the session; PAM_IGNORE when this
 * handle opened none, or vxvdexd could not be told (logged: the daemon also
 * collects namespaces that no process uses any more).
 */
PAM_EXTERN int pam_sm_close_session(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	struct vxvdex_opts o;
	const void *req = NULL;
	int ret;

	(void)flags;
	vxvdex_parse(pamh, argc, argv, &o);
	if (pam_get_data(pamh, VXVDEX_DATA, &req) != PAM_SUCCESS || req == NULL)
		return PAM_IGNORE;
	ret = vxvdex_close(pamh, &o, req) == 0 ? PAM_SUCCESS : PAM_IGNORE;
	pam_set_data(pamh, VXVDEX_DATA, NULL, NULL);
	return ret;
}
