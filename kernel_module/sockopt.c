// SPDX-License-Identifier: GPL-2.0
/*
 * AF_VXVDEX socket options: one whitelist table. Anything not in it is
 * refused with -ENOPROTOOPT. Values are checked, capped and then set on
 * the lower socket from kernel memory.
 *
 * Kernels without SOCK_CUSTOM_SOCKOPT (6.1) hand SOL_SOCKET options to the
 * core before the family sees them: they land on the AF_VXVDEX socket's
 * own struct sock, which never carries a packet, so they have no effect;
 * SO_RCVBUF is carried down by vxvdex_sync_rcvbuf().
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/in.h>
#include <linux/in6.h>
#include <linux/udp.h>
#include <net/ipv6.h>
#include <net/sock.h>

#include "af_vxvdex.h"

struct vxvdex_opt {
	int level;
	int name;
	u16 family;		/* 0: both */
	int (*set)(struct vxvdex_sock *vs, const struct vxvdex_opt *opt,
		   sockptr_t val, unsigned int len);
};

/* An int, or a single byte where IPv4 accepts one (IP_TTL & co). */
static int vxvdex_get_int(const struct vxvdex_opt *opt, sockptr_t val,
			  unsigned int len, int *out)
{
	u8 byte;

	if (len >= sizeof(int))
		return copy_from_sockptr(out, val, sizeof(int)) ? -EFAULT : 0;
	if (len < 1 || opt->level != SOL_IP)
		return -EINVAL;
	if (copy_from_sockptr(&byte, val, 1))
		return -EFAULT;
	*out = byte;
	return 0;
}

static bool vxvdex_opt_is_mcast(const struct vxvdex_opt *opt)
{
	return (opt->level == SOL_IP && opt->name == IP_MULTICAST_TTL) ||
	       (opt->level == SOL_IPV6 && opt->name == IPV6_MULTICAST_HOPS);
}

/*
 * TTL and hop limits are capped (not refused) at maxttl, as SO_RCVBUF is
 * capped at rmem_max. -1 means "default": maxttl for unicast, 1 for
 * multicast (the kernel's multicast default).
 */
static int vxvdex_set_hops(struct vxvdex_sock *vs, const struct vxvdex_opt *opt,
			   sockptr_t val, unsigned int len)
{
	int floor = opt->level == SOL_IP && opt->name == IP_TTL ? 1 : 0;
	int max = READ_ONCE(vxvdex_maxttl);
	bool mcast = vxvdex_opt_is_mcast(opt);
	int v, err;

	err = vxvdex_get_int(opt, val, len, &v);
	if (err)
		return err;
	if (v == -1)
		v = mcast ? 1 : max;
	if (v < floor || v > 255)
		return -EINVAL;
	return vxvdex_lower_setint(vs, opt->level, opt->name, min(v, max));
}

static int vxvdex_set_bool(struct vxvdex_sock *vs, const struct vxvdex_opt *opt,
			   sockptr_t val, unsigned int len)
{
	int v, err;

	err = vxvdex_get_int(opt, val, len, &v);
	if (err)
		return err;
	return vxvdex_lower_setint(vs, opt->level, opt->name, !!v);
}

static int vxvdex_set_rcvbuf(struct vxvdex_sock *vs,
			     const struct vxvdex_opt *opt,
			     sockptr_t val, unsigned int len)
{
	int v, err;

	err = vxvdex_get_int(opt, val, len, &v);
	if (err)
		return err;
	v = clamp_t(int, v, 0, READ_ONCE(sysctl_rmem_max));
	err = vxvdex_lower_setint(vs, SOL_SOCKET, SO_RCVBUF, v);
	if (!err) {
		v = READ_ONCE(vs->lower->sk->sk_rcvbuf);
		/* getsockopt(SOL_SOCKET) always reads the upper sock */
		WRITE_ONCE(vs->sk.sk_rcvbuf, v);
		WRITE_ONCE(vs->rcvbuf_seen, v);
	}
	return err;
}

/*
 * Kept here, never on the lower socket, so a racing setsockopt cannot
 * change the segment size between the header check and the send:
 * sendmsg always passes the checked size as an explicit UDP_SEGMENT cmsg.
 */
static int vxvdex_set_gso(struct vxvdex_sock *vs, const struct vxvdex_opt *opt,
			  sockptr_t val, unsigned int len)
{
	int v, err;

	err = vxvdex_get_int(opt, val, len, &v);
	if (err)
		return err;
	if (v < 0 || v > USHRT_MAX)
		return -EINVAL;
	WRITE_ONCE(vs->gso_size, v);
	return 0;
}

/*
 * UDP_GRO can be switched on, never off again: a train merged while it is
 * on stays one skb in the lower queue, and with the option off the lower
 * socket would hand it over without its segment size, so that only the
 * first segment's header could be checked. Off while off is accepted.
 */
static int vxvdex_set_gro(struct vxvdex_sock *vs, const struct vxvdex_opt *opt,
			  sockptr_t val, unsigned int len)
{
	int v, err;

	err = vxvdex_get_int(opt, val, len, &v);
	if (err)
		return err;
	if (!v)
		return READ_ONCE(vs->gro) ? -EINVAL : 0;
	err = vxvdex_lower_setint(vs, SOL_UDP, UDP_GRO, 1);
	if (!err)
		WRITE_ONCE(vs->gro, true);
	return err;
}

/* ip_mreq or ip_mreqn: only the group is taken from the caller. */
static int vxvdex_set_mreq4(struct vxvdex_sock *vs,
			    const struct vxvdex_opt *opt,
			    sockptr_t val, unsigned int len)
{
	struct ip_mreqn mreq = { .imr_ifindex = READ_ONCE(vxvdex_ifindex) };
	struct in6_addr group;

	if (len < sizeof(struct ip_mreq))
		return -EINVAL;
	if (copy_from_sockptr(&mreq.imr_multiaddr, val, sizeof(struct in_addr)))
		return -EFAULT;
	ipv6_addr_set_v4mapped(mreq.imr_multiaddr.s_addr, &group);
	if (!vxvdex_is_group(vs, &group))
		return -EACCES;
	return vxvdex_lower_setsockopt(vs, SOL_IP, opt->name, &mreq,
				       sizeof(mreq));
}

static int vxvdex_set_mreq6(struct vxvdex_sock *vs,
			    const struct vxvdex_opt *opt,
			    sockptr_t val, unsigned int len)
{
	struct ipv6_mreq mreq = {};

	if (len < sizeof(mreq))
		return -EINVAL;
	if (copy_from_sockptr(&mreq.ipv6mr_multiaddr, val,
			      sizeof(struct in6_addr)))
		return -EFAULT;
	if (!vxvdex_is_group(vs, &mreq.ipv6mr_multiaddr))
		return -EACCES;
	mreq.ipv6mr_ifindex = READ_ONCE(vxvdex_ifindex);
	return vxvdex_lower_setsockopt(vs, SOL_IPV6, opt->name, &mreq,
				       sizeof(mreq));
}

static const struct vxvdex_opt vxvdex_opts[] = {
	{ SOL_SOCKET, SO_RCVBUF,		0,	  vxvdex_set_rcvbuf },
	{ SOL_IP,     IP_TTL,			AF_INET,  vxvdex_set_hops },
	{ SOL_IP,     IP_MULTICAST_TTL,		AF_INET,  vxvdex_set_hops },
	{ SOL_IP,     IP_PKTINFO,		AF_INET,  vxvdex_set_bool },
	{ SOL_IP,     IP_ADD_MEMBERSHIP,	AF_INET,  vxvdex_set_mreq4 },
	{ SOL_IP,     IP_DROP_MEMBERSHIP,	AF_INET,  vxvdex_set_mreq4 },
	{ SOL_IPV6,   IPV6_UNICAST_HOPS,	AF_INET6, vxvdex_set_hops },
	{ SOL_IPV6,   IPV6_MULTICAST_HOPS,	AF_INET6, vxvdex_set_hops },
	{ SOL_IPV6,   IPV6_RECVPKTINFO,		AF_INET6, vxvdex_set_bool },
	{ SOL_IPV6,   IPV6_ADD_MEMBERSHIP,	AF_INET6, vxvdex_set_mreq6 },
	{ SOL_IPV6,   IPV6_DROP_MEMBERSHIP,	AF_INET6, vxvdex_set_mreq6 },
	{ SOL_UDP,    UDP_SEGMENT,		0,	  vxvdex_set_gso },
	{ SOL_UDP,    UDP_GRO,			0,	  vxvdex_set_gro },
};

static const struct vxvdex_opt *vxvdex_find_opt(const struct vxvdex_sock *vs,
						int level, int name)
{
	const struct vxvdex_opt *opt;

	for (opt = vxvdex_opts; opt < vxvdex_opts + ARRAY_SIZE(vxvdex_opts);
	     opt++)
		if (opt->level == level && opt->name == name &&
		    (!opt->family || opt->family == vs->family))
			return opt;
	return NULL;
}

int vxvdex_setsockopt(struct socket *sock, int level, int optname,
		      sockptr_t optval, unsigned int optlen)
{
	struct vxvdex_sock *vs = vxvdex_sk(sock->sk);
	const struct vxvdex_opt *opt;

	opt = vxvdex_find_opt(vs, level, optname);
	if (!opt)
		return -ENOPROTOOPT;
	return opt->set(vs, opt, optval, optlen);
}

static bool vxvdex_level_readable(const struct vxvdex_sock *vs, int level)
{
	return level == SOL_UDP ||
	       (level == SOL_IP && vs->family == AF_INET) ||
	       (level == SOL_IPV6 && vs->family == AF_INET6);
}

/* Reading is harmless: the lower socket answers, except UDP_SEGMENT. */
int vxvdex_getsockopt(struct socket *sock, int level, int optname,
		      char __user *optval, int __user *optlen)
{
	struct vxvdex_sock *vs = vxvdex_sk(sock->sk);
	struct socket *lower = vs->lower;
	int len, val;

	if (!vxvdex_level_readable(vs, level))
		return -ENOPROTOOPT;
	if (level != SOL_UDP || optname != UDP_SEGMENT)
		return lower->ops->getsockopt(lower, level, optname, optval,
					      optlen);

	if (get_user(len, optlen))
		return -EFAULT;
	if (len < 0)
		return -EINVAL;
	len = min_t(int, len, sizeof(int));
	val = READ_ONCE(vs->gso_size);
	if (put_user(len, optlen) || copy_to_user(optval, &val, len))
		return -EFAULT;
	return 0;
}
