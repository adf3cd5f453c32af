// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libvdeplug_vxvdex: a vdeplug4 plugin that joins the vxvde VLAN of the
 * caller's effective gid through AF_VXVDEX sockets (the af_vxvdex kernel
 * module of the vxvdex project), without any privilege.
 *
 *   vde_plug vxvdex:// tap://vde0
 *   vde_plug vxvdex:///v6/port=14790 tap://vde0
 *
 * Wire format, addresses and forwarding: the vxvde protocol of vdeplug4
 * (libvdeplug_vxvde), byte for byte, as the project's PROTOCOL.md states it:
 *
 *   - datagram = 8-byte header (08 00 00 00 VNI24 00) + one Ethernet frame;
 *   - a multicast socket bound to GROUP:PORT, joined, with packet info on,
 *     that only receives; a unicast socket on an ephemeral port that sends
 *     everything and receives the unicast replies;
 *   - frames to group MACs or unknown/expired MACs go to GROUP:PORT, the
 *     others to the (address, port) learned from the source MAC;
 *   - an 8-byte header-only datagram is a "leave": forget that sender;
 *   - datagrams whose frame is 14 bytes or shorter are not frames.
 *
 * With AF_VXVDEX the kernel fixes the VNI to the egid (as the initial user
 * namespace sees it) at socket creation, and checks every header we send:
 * the group is the address prefix with the egid as its last three bytes, and
 * a grp= or vni= naming another group is refused here with a message.
 *
 * The sockets' traffic flows through UDP sockets of the initial network
 * namespace, whatever namespace we run in: "this host's addresses" (the self
 * filter) are therefore those of the initial namespace, which we test by
 * binding a throw-away AF_VXVDEX socket to the address in question.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <libvdeplug.h>
#include "libvdeplug_mod.h"

#ifndef AF_VXVDEX
#define AF_VXVDEX 13		/* the number of the long-unused AF_NETBEUI */
#endif

#define VXVDEX_PORT 14789
#define VXVDEX_GROUP_V4 "239.0.0.1"
#define VXVDEX_GROUP_V6 "ff05:56de::1"
#define VXVDEX_TTL 1
#define VXVDEX_HASHSIZE 1024
#define VXVDEX_MAX_HASHSIZE (1U << 20)
#define VXVDEX_EXPIRE 128
#define VXVDEX_MAX_ID ((1U << 24) - 1)
#define VXVDEX_FLAGS 0x08	/* the "VNI present" bit of VXLAN */
#define VXVDEX_HDRLEN 8
#define ETH_HDRLEN 14
#define ETH_ALEN 6
/* How long an address found not to be ours is believed (seconds). */
#define NOTSELF_TTL 10

union vx_addr {
	struct sockaddr sa;
	struct sockaddr_in v4;
	struct sockaddr_in6 v6;
	struct sockaddr_storage ss;
};

struct vx_conn {
	/* the first two members are struct vdeconn's: libvdeplug fills them */
	void *handle;
	struct vdeplug_module *module;
	struct vde_hashtable *table;
	unsigned char hdr[VXVDEX_HDRLEN];
	union vx_addr group;		/* GROUP:PORT, where every unknown goes */
	socklen_t addrlen;		/* of group, and of every peer address */
	int family;
	in_port_t uport;		/* our unicast port, network order */
	int mfd;			/* multicast socket: receives only */
	int ufd;			/* unicast socket: sends everything */
	int pollfd;			/* both of them, the data fd */
	time_t expire;
	union vx_addr self;		/* an address found to be ours */
	int have_self;
	union vx_addr notself;		/* the last address found not ours */
	time_t notself_until;
};

static VDECONN *vx_open(char *url, char *descr, int interface_version,
			struct vde_open_args *open_args);
static ssize_t vx_recv(VDECONN *conn, void *buf, size_t len, int flags);
static ssize_t vx_send(VDECONN *conn, const void *buf, size_t len, int flags);
static int vx_datafd(VDECONN *conn);
static int vx_ctlfd(VDECONN *conn);
static int vx_close(VDECONN *conn);

/* the only exported symbol (built with -fvisibility=hidden) */
__attribute__((visibility("default")))
struct vdeplug_module vdeplug_ops = {
	.vde_open_real = vx_open,
	.vde_recv = vx_recv,
	.vde_send = vx_send,
	.vde_datafd = vx_datafd,
	.vde_ctlfd = vx_ctlfd,
	.vde_close = vx_close,
};

#define vx_err(err, ...) do {				\
		fprintf(stderr, "vxvdex: " __VA_ARGS__);	\
		fputc('\n', stderr);				\
		errno = (err);					\
	} while (0)

/* ---- URL values ----------------------------------------------------- */

/* A decimal (or 0x hex) integer in [low, high]; -1 and a message if not. */
static long long vx_number(const char *name, const char *text,
			   long long low, long long high)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(text, &end, 0);
	if (*text == '\0' || *end != '\0' || errno || v < low || v > high) {
		vx_err(EINVAL, "%s=%s: must be an integer from %lld to %lld",
		       name, text, low, high);
		return -1;
	}
	return v;
}

/* A byte count with k/M/G suffixes, as vdeplug4's strtoullm. */
static long long vx_size(const char *name, const char *text)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(text, &end, 10);
	if (*text < '0' || *text > '9' || errno)
		goto bad;
	for (; *end; end++) {
		unsigned int shift;

		switch (*end) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		default: goto bad;
		}
		if (v > (unsigned long long)(INT_MAX >> shift))
			goto bad;
		v <<= shift;
	}
	if (v == 0 || v > INT_MAX)
		goto bad;
	return (long long)v;
bad:
	vx_err(EINVAL, "%s=%s: must be a byte count up to 2G, like 4194304, 4096k or 4M",
	       name, text);
	return -1;
}

/*
 * grp= and vni= may only name our own egid: the kernel fixes the VNI of an
 * AF_VXVDEX socket to it. Empty means the egid, as in vdeplug4.
 */
static int vx_check_own_group(const char *name, const char *text, gid_t egid)
{
	gid_t g;

	if (text == NULL)
		return 0;
	g = vde_grnam2gid(text);
	if (g == (gid_t)-1) {
		vx_err(EINVAL, "%s=%s: no such group", name, text);
		return -1;
	}
	if (g != egid) {
		vx_err(EACCES, "%s=%s refused: AF_VXVDEX only reaches the VLAN of your "
		       "effective gid %u (run as that group, e.g. with sg(1), or use "
		       "vxvde:// with privileges)", name, text, (unsigned int)egid);
		return -1;
	}
	return 0;
}

/* ---- addresses ------------------------------------------------------ */

static void vx_set_tail(union vx_addr *a, uint32_t id)
{
	unsigned char *p;

	if (a->sa.sa_family == AF_INET)
		p = (unsigned char *)&a->v4.sin_addr + sizeof(a->v4.sin_addr) - 3;
	else
		p = (unsigned char *)&a->v6.sin6_addr + sizeof(a->v6.sin6_addr) - 3;
	p[0] = id >> 16;
	p[1] = id >> 8;
	p[2] = id;
}

/* Parse a numeric address into a (port 0) sockaddr; want: AF_UNSPEC or a family. */
static int vx_parse_addr(const char *text, int want, union vx_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (want != AF_INET6 && inet_pton(AF_INET, text, &a->v4.sin_addr) == 1) {
		a->v4.sin_family = AF_INET;
		return 0;
	}
	if (want != AF_INET && inet_pton(AF_INET6, text, &a->v6.sin6_addr) == 1) {
		a->v6.sin6_family = AF_INET6;
		return 0;
	}
	return -1;
}

static int vx_is_multicast(const union vx_addr *a)
{
	if (a->sa.sa_family == AF_INET)
		return IN_MULTICAST(ntohl(a->v4.sin_addr.s_addr));
	return IN6_IS_ADDR_MULTICAST(&a->v6.sin6_addr);
}

static in_port_t vx_port(const union vx_addr *a)
{
	return a->sa.sa_family == AF_INET ? a->v4.sin_port : a->v6.sin6_port;
}

static int vx_same_host(const union vx_addr *a, const union vx_addr *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return 0;
	if (a->sa.sa_family == AF_INET)
		return a->v4.sin_addr.s_addr == b->v4.sin_addr.s_addr;
	return memcmp(&a->v6.sin6_addr, &b->v6.sin6_addr, sizeof(a->v6.sin6_addr)) == 0 &&
		a->v6.sin6_scope_id == b->v6.sin6_scope_id;
}

static int vx_socket(int family)
{
	return socket(AF_VXVDEX, SOCK_DGRAM | SOCK_CLOEXEC, family);
}

/*
 * Whether addr is one of this host's addresses. Our AF_VXVDEX sockets live
 * in the initial network namespace, which need not be ours: ask the module,
 * which lets an AF_VXVDEX socket bind (port 0) to exactly the local unicast
 * addresses of that namespace.
 */
static int vx_is_local(const union vx_addr *addr, socklen_t len)
{
	union vx_addr probe = *addr;
	int fd, ok;

	if (probe.sa.sa_family == AF_INET)
		probe.v4.sin_port = 0;
	else
		probe.v6.sin6_port = 0;
	fd = vx_socket(probe.sa.sa_family);
	if (fd < 0)
		return 0;
	ok = bind(fd, &probe.sa, len) == 0;
	close(fd);
	return ok;
}

/* Our own multicast, looped back: our unicast port, from an address of ours. */
static int vx_from_self(struct vx_conn *c, const union vx_addr *sender)
{
	time_t now;

	if (vx_port(sender) != c->uport)
		return 0;
	if (c->have_self && vx_same_host(sender, &c->self))
		return 1;
	now = time(NULL);
	if (now < c->notself_until && vx_same_host(sender, &c->notself))
		return 0;
	if (vx_is_local(sender, c->addrlen)) {
		c->self = *sender;
		c->have_self = 1;
		return 1;
	}
	c->notself = *sender;
	c->notself_until = now + NOTSELF_TTL;
	return 0;
}

/* ---- open ----------------------------------------------------------- */

static int vx_setint(int fd, int level, int name, int value, const char *what)
{
	if (setsockopt(fd, level, name, &value, sizeof(value)) == 0)
		return 0;
	vx_err(errno, "%s: %s", what, strerror(errno));
	return -1;
}

static int vx_join(struct vx_conn *c, int ttl, long long rcvbuf)
{
	if (c->family == AF_INET) {
		struct ip_mreqn mreq = { .imr_multiaddr = c->group.v4.sin_addr };

		if (vx_setint(c->mfd, IPPROTO_IP, IP_PKTINFO, 1, "IP_PKTINFO") ||
		    vx_setint(c->ufd, IPPROTO_IP, IP_TTL, ttl, "IP_TTL") ||
		    vx_setint(c->ufd, IPPROTO_IP, IP_MULTICAST_TTL, ttl, "IP_MULTICAST_TTL"))
			return -1;
		if (setsockopt(c->mfd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof(mreq)) < 0)
			goto nojoin;
	} else {
		struct ipv6_mreq mreq = { .ipv6mr_multiaddr = c->group.v6.sin6_addr };

		if (vx_setint(c->mfd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1, "IPV6_RECVPKTINFO") ||
		    vx_setint(c->ufd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, ttl, "IPV6_UNICAST_HOPS") ||
		    vx_setint(c->ufd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, ttl, "IPV6_MULTICAST_HOPS"))
			return -1;
		if (setsockopt(c->mfd, IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, &mreq, sizeof(mreq)) < 0)
			goto nojoin;
	}
	if (rcvbuf > 0 &&
	    (vx_setint(c->ufd, SOL_SOCKET, SO_RCVBUF, (int)rcvbuf, "SO_RCVBUF") ||
	     vx_setint(c->mfd, SOL_SOCKET, SO_RCVBUF, (int)rcvbuf, "SO_RCVBUF")))
		return -1;
	return 0;
nojoin:
	vx_err(errno, "cannot join the group: %s (is there a multicast route in the "
	       "initial namespace? `ip route add 224.0.0.0/4 dev eth0`)", strerror(errno));
	return -1;
}

static int vx_sockets(struct vx_conn *c, const union vx_addr *bindaddr)
{
	union vx_addr local;
	socklen_t len = sizeof(local);
	char text[INET6_ADDRSTRLEN];

	c->mfd = vx_socket(c->family);
	if (c->mfd < 0) {
		int err = errno;

		if (err == EAFNOSUPPORT || err == EINVAL)
			vx_err(EAFNOSUPPORT, "AF_VXVDEX is not available: load the af_vxvdex "
			       "kernel module (`modprobe af_vxvdex`)");
		else if (err == EPERM)
			vx_err(EPERM, "AF_VXVDEX refused your effective gid %u: it must be at "
			       "least the module's mingid (/sys/module/af_vxvdex/parameters/mingid)",
			       (unsigned int)getegid());
		else
			vx_err(err, "socket(AF_VXVDEX): %s", strerror(err));
		return -1;
	}
	c->ufd = vx_socket(c->family);
	if (c->ufd < 0) {
		vx_err(errno, "socket(AF_VXVDEX): %s", strerror(errno));
		return -1;
	}
	/* The module shares GROUP:PORT between endpoints by itself (no SO_REUSEADDR). */
	if (bind(c->mfd, &c->group.sa, c->addrlen) < 0) {
		inet_ntop(c->family, c->family == AF_INET ? (void *)&c->group.v4.sin_addr :
			  (void *)&c->group.v6.sin6_addr, text, sizeof(text));
		vx_err(errno, "cannot bind %s port %u: %s", text,
		       (unsigned int)ntohs(vx_port(&c->group)), strerror(errno));
		return -1;
	}
	if (bind(c->ufd, &bindaddr->sa, c->addrlen) < 0) {
		vx_err(errno, "cannot bind the unicast socket: %s", strerror(errno));
		return -1;
	}
	if (getsockname(c->ufd, &local.sa, &len) < 0) {
		vx_err(errno, "getsockname: %s", strerror(errno));
		return -1;
	}
	c->uport = vx_port(&local);
	return 0;
}

static int vx_poll(struct vx_conn *c)
{
	struct epoll_event ev = { .events = EPOLLIN };

	c->pollfd = epoll_create1(EPOLL_CLOEXEC);
	if (c->pollfd < 0)
		return -1;
	ev.data.fd = c->mfd;
	if (epoll_ctl(c->pollfd, EPOLL_CTL_ADD, c->mfd, &ev) < 0)
		return -1;
	ev.data.fd = c->ufd;
	return epoll_ctl(c->pollfd, EPOLL_CTL_ADD, c->ufd, &ev);
}

static void vx_free(struct vx_conn *c)
{
	int err = errno;

	if (c->mfd >= 0)
		close(c->mfd);
	if (c->ufd >= 0)
		close(c->ufd);
	if (c->pollfd >= 0)
		close(c->pollfd);
	if (c->table)
		vde_hash_fini(c->table);
	free(c);
	errno = err;
}

static VDECONN *vx_open(char *url, char *descr, int interface_version,
			struct vde_open_args *open_args)
{
	char *portstr = NULL, *vnistr = NULL, *grpstr = NULL, *ttlstr = NULL;
	char *rcvbufstr = NULL, *v6str = NULL, *v4str = NULL, *hashstr = NULL;
	char *expirestr = NULL, *ifstr = NULL, *bindstr = NULL;
	/* table order as vxvde's: an abbreviated option takes the first it prefixes */
	struct vdeparms parms[] = {
		{ "port", &portstr },
		{ "vni", &vnistr },
		{ "grp", &grpstr },
		{ "ttl", &ttlstr },
		{ "rcvbuf", &rcvbufstr },
		{ "v6", &v6str },
		{ "v4", &v4str },
		{ "hashsize", &hashstr },
		{ "expiretime", &expirestr },
		{ "if", &ifstr },
		{ "bind", &bindstr },
		{ NULL, NULL }
	};
	gid_t egid = getegid();
	long long port = VXVDEX_PORT, ttl = VXVDEX_TTL, rcvbuf = 0;
	long long hashsize = VXVDEX_HASHSIZE, expire = VXVDEX_EXPIRE;
	int want = AF_UNSPEC;
	union vx_addr bindaddr;
	struct vx_conn *c;

	(void)descr;
	(void)interface_version;
	(void)open_args;

	if (vde_parseparms(url, parms) != 0)
		return NULL;	/* vde_parseparms said which key it does not know */
	if ((unsigned int)egid > VXVDEX_MAX_ID) {
		vx_err(EPERM, "your effective gid %u does not fit in a 24-bit VNI",
		       (unsigned int)egid);
		return NULL;
	}
	if (vx_check_own_group("grp", grpstr, egid) || vx_check_own_group("vni", vnistr, egid))
		return NULL;
	if ((portstr && (port = vx_number("port", portstr, 1, 65535)) < 0) ||
	    (ttlstr && (ttl = vx_number("ttl", ttlstr, 1, 255)) < 0) ||
	    (rcvbufstr && (rcvbuf = vx_size("rcvbuf", rcvbufstr)) < 0) ||
	    (hashstr && (hashsize = vx_number("hashsize", hashstr, 2, VXVDEX_MAX_HASHSIZE)) < 0) ||
	    (expirestr && (expire = vx_number("expiretime", expirestr, 1, 1 << 30)) < 0))
		return NULL;
	if (!!v4str != !!v6str)
		want = v6str ? AF_INET6 : AF_INET;
	if (ifstr && *ifstr)
		fprintf(stderr, "vxvdex: if=%s ignored: AF_VXVDEX joins and sends on the "
			"interface of the module's ifindex parameter\n", ifstr);

	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	c->mfd = c->ufd = c->pollfd = -1;

	if (*url == '\0')
		url = want == AF_INET6 ? VXVDEX_GROUP_V6 : VXVDEX_GROUP_V4;
	if (vx_parse_addr(url, want, &c->group) < 0) {
		vx_err(EINVAL, "'%s' is not a numeric IPv%s multicast address", url,
		       want == AF_INET6 ? "6" : want == AF_INET ? "4" : "4 or IPv6");
		goto fail;
	}
	if (!vx_is_multicast(&c->group)) {
		vx_err(EINVAL, "%s is not a multicast group (use 239.0.0.0/8 or ff05::/16)", url);
		goto fail;
	}
	c->family = c->group.sa.sa_family;
	c->addrlen = c->family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	/* The group is the prefix with our egid, the VNI, as its last three bytes. */
	vx_set_tail(&c->group, egid);
	if (c->family == AF_INET)
		c->group.v4.sin_port = htons(port);
	else
		c->group.v6.sin6_port = htons(port);

	memset(&bindaddr, 0, sizeof(bindaddr));
	bindaddr.sa.sa_family = c->family;
	if (bindstr && *bindstr && vx_parse_addr(bindstr, c->family, &bindaddr) < 0) {
		vx_err(EINVAL, "bind=%s: not a numeric IPv%s address", bindstr,
		       c->family == AF_INET ? "4" : "6");
		goto fail;
	}

	c->hdr[0] = VXVDEX_FLAGS;
	c->hdr[4] = egid >> 16;
	c->hdr[5] = egid >> 8;
	c->hdr[6] = egid;
	c->expire = expire;
	c->table = c->family == AF_INET ?
		vde_hash_init(struct sockaddr_in, hashsize, 0) :
		vde_hash_init(struct sockaddr_in6, hashsize, 0);
	if (c->table == NULL) {
		errno = ENOMEM;
		goto fail;
	}
	if (vx_sockets(c, &bindaddr) < 0 || vx_join(c, ttl, rcvbuf) < 0)
		goto fail;
	if (vx_poll(c) < 0)
		goto fail;
	return (VDECONN *)c;
fail:
	vx_free(c);
	return NULL;
}

/* ---- data ----------------------------------------------------------- */

static ssize_t vx_recv(VDECONN *conn, void *buf, size_t len, int flags)
{
	struct vx_conn *c = (struct vx_conn *)conn;
	struct epoll_event ev;
	unsigned char hdr[VXVDEX_HDRLEN];
	struct iovec iov[] = { { hdr, sizeof(hdr) }, { buf, len } };
	union vx_addr sender;
	char control[CMSG_SPACE(sizeof(struct in6_pktinfo))];
	struct msghdr msg = {
		.msg_name = &sender,
		.msg_namelen = sizeof(sender),
		.msg_iov = iov,
		.msg_iovlen = 2,
		.msg_control = control,
		.msg_controllen = sizeof(control),
	};
	unsigned char *src;
	ssize_t n;

	(void)flags;
	/*
	 * Never block: a wakeup can be spurious (a datagram the module dropped),
	 * and the caller must get back to its other descriptors.
	 */
	if (epoll_wait(c->pollfd, &ev, 1, 0) <= 0)
		goto notaframe;
	memset(&sender, 0, sizeof(sender));
	n = recvmsg(ev.data.fd, &msg, MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EINTR || errno == EAGAIN || errno == ECONNREFUSED)
			goto notaframe;
		return -1;
	}
	if (n < VXVDEX_HDRLEN || memcmp(hdr, c->hdr, VXVDEX_HDRLEN) != 0 ||
	    msg.msg_namelen < c->addrlen || sender.sa.sa_family != c->family)
		goto notaframe;
	if (ev.data.fd == c->mfd && vx_from_self(c, &sender))
		goto notaframe;
	n -= VXVDEX_HDRLEN;
	if (n == 0) {
		/* a leave: forget everything learned from that sender */
		vde_hash_delete(c->table, &sender);
		goto notaframe;
	}
	if (n <= ETH_HDRLEN || (msg.msg_flags & MSG_TRUNC))
		goto notaframe;
	src = (unsigned char *)buf + ETH_ALEN;
	if (!(src[0] & 1))
		vde_find_in_hash_update(c->table, src, 1, &sender, time(NULL));
	return n;
notaframe:
	/* vdeplug4's convention: 1 (shorter than any frame) means "nothing" */
	errno = EAGAIN;
	return 1;
}

static ssize_t vx_send(VDECONN *conn, const void *buf, size_t len, int flags)
{
	struct vx_conn *c = (struct vx_conn *)conn;
	const unsigned char *dst = buf;
	struct iovec iov[] = { { c->hdr, VXVDEX_HDRLEN }, { (void *)buf, len } };
	struct msghdr msg = {
		.msg_iov = iov,
		.msg_iovlen = 2,
		.msg_namelen = c->addrlen,
	};
	void *peer = NULL;
	ssize_t n;

	(void)flags;
	if (len <= ETH_HDRLEN)
		return len;	/* not a frame: never sent */
	if (!(dst[0] & 1))
		peer = vde_find_in_hash(c->table, (unsigned char *)dst, 1, time(NULL) - c->expire);
	msg.msg_name = peer ? peer : (void *)&c->group;
	n = sendmsg(c->ufd, &msg, 0);
	if (n < 0 && errno == EACCES && peer != NULL) {
		/* The module no longer lets us reach that peer: ask the group. */
		vde_hash_delete(c->table, peer);
		msg.msg_name = &c->group;
		n = sendmsg(c->ufd, &msg, 0);
	}
	if (n < 0)
		return -1;
	n -= VXVDEX_HDRLEN;
	return n < 0 ? 0 : n;
}

static int vx_datafd(VDECONN *conn)
{
	return ((struct vx_conn *)conn)->pollfd;
}

static int vx_ctlfd(VDECONN *conn)
{
	(void)conn;
	return -1;
}

static int vx_close(VDECONN *conn)
{
	struct vx_conn *c = (struct vx_conn *)conn;

	/* leave: a header-only datagram to the group */
	sendto(c->ufd, c->hdr, VXVDEX_HDRLEN, 0, &c->group.sa, c->addrlen);
	vx_free(c);
	return 0;
}
