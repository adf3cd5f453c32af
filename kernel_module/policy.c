// SPDX-License-Identifier: GPL-2.0
/*
 * AF_VXVDEX policy: who may open a socket, what the header is, where a
 * socket may bind and where it may send.
 *
 * The destination rule (vxvdex_dst_allowed), for a socket of VNI v:
 *
 *   multicast  only an address whose last three bytes are v, and only at
 *              one of the vxvde ports where an AF_VXVDEX socket of VNI v
 *              on this host is bound to exactly that group (the
 *              endpoint's group socket);
 *   loopback, unspecified, broadcast, v4-mapped: never;
 *   this host's own addresses (init_net: local addresses and local
 *              routes): only an (address, port) currently bound by an
 *              AF_VXVDEX socket of VNI v, to that address or to the
 *              wildcard; this is how two endpoints of one gid on one host
 *              reach each other;
 *   any other unicast (address, port): only if a valid datagram of VNI v
 *              came from it in the last 128 s (see peer.c).
 *
 * Every refusal is -EACCES and nothing is sent.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cred.h>
#include <linux/uidgid.h>
#include <linux/user_namespace.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/netdevice.h>
#include <net/addrconf.h>
#include <net/ip6_route.h>
#include <net/ipv6.h>
#include <net/route.h>

#include "af_vxvdex.h"

/*
 * The gid must be one the caller holds in the initial user namespace, not
 * one that a user namespace maps from a subordinate range (newgidmap):
 * at every level up to the initial namespace the egid must be the gid of
 * that namespace's creator. `unshare -r` maps one's own gid and passes.
 */
static bool vxvdex_gid_held(const struct cred *cred)
{
	const struct user_namespace *ns;

	for (ns = cred->user_ns; ns != &init_user_ns; ns = ns->parent)
		if (!gid_eq(cred->egid, ns->group))
			return false;
	return true;
}

/* The VLAN is the effective gid as the initial user namespace sees it. */
int vxvdex_caller_vni(u32 *vni)
{
	const struct cred *cred = current_cred();
	gid_t gid = from_kgid(&init_user_ns, cred->egid);

	if (gid >= VXVDEX_VNI_LIMIT || gid < READ_ONCE(vxvdex_mingid) ||
	    gid > READ_ONCE(vxvdex_maxgid) || !vxvdex_gid_held(cred))
		return -EPERM;
	*vni = gid;
	return 0;
}

void vxvdex_make_hdr(u8 *hdr, u32 vni)
{
	BUILD_BUG_ON(VXVDEX_HDR_LEN != 8);
	hdr[0] = VXVDEX_HDR_FLAGS;
	hdr[1] = 0;
	hdr[2] = 0;
	hdr[3] = 0;
	hdr[4] = vni >> 16;
	hdr[5] = vni >> 8;
	hdr[6] = vni;
	hdr[7] = 0;
}

/*
 * Every segment of seg bytes (the whole buffer when seg is 0) must start
 * with the socket's header; a last segment too short for one fails.
 */
bool vxvdex_segments_ok(const struct vxvdex_sock *vs, const u8 *buf,
			size_t len, unsigned int seg)
{
	size_t off;

	if (len < VXVDEX_HDR_LEN || (seg && seg < VXVDEX_HDR_LEN))
		return false;
	if (!seg)
		seg = len;
	for (off = 0; off < len; off += seg)
		if (len - off < VXVDEX_HDR_LEN ||
		    memcmp(buf + off, vs->hdr, VXVDEX_HDR_LEN))
			return false;
	return true;
}

/*
 * Only addresses that need one keep a scope. For a group that needs one
 * (ff02::/16, ff01::/16) the administrator's ifindex, when set, wins over
 * the caller's: the VLAN joins and leaves by that interface only.
 */
static u32 vxvdex_scope(const struct in6_addr *a, u32 scope)
{
	int type = ipv6_addr_type(a);
	u32 admin = READ_ONCE(vxvdex_ifindex);

	if (!__ipv6_addr_needs_scope_id(type))
		return 0;
	if (type & IPV6_ADDR_MULTICAST && admin)
		return admin;
	return scope;
}

/* -EINVAL for a short address, -EAFNOSUPPORT for the other family. */
int vxvdex_key_from_sockaddr(const struct vxvdex_sock *vs,
			     const struct sockaddr *sa, int len,
			     struct vxvdex_key *key)
{
	memset(key, 0, sizeof(*key));
	key->vni = vs->vni;
	key->family = vs->family;

	if (vs->family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)sa;

		if (len < (int)sizeof(*sin))
			return -EINVAL;
		if (sin->sin_family != AF_INET)
			return -EAFNOSUPPORT;
		ipv6_addr_set_v4mapped(sin->sin_addr.s_addr, &key->addr);
		key->port = sin->sin_port;
	} else {
		const struct sockaddr_in6 *sin6 = (const void *)sa;

		if (len < SIN6_LEN_RFC2133)
			return -EINVAL;
		if (sin6->sin6_family != AF_INET6)
			return -EAFNOSUPPORT;
		key->addr = sin6->sin6_addr;
		key->port = sin6->sin6_port;
		key->scope = vxvdex_scope(&key->addr, len >= (int)sizeof(*sin6) ?
					  sin6->sin6_scope_id : 0);
	}
	return 0;
}

int vxvdex_key_to_sockaddr(const struct vxvdex_key *key,
			   struct sockaddr_storage *ss)
{
	struct sockaddr_in6 *sin6;

	memset(ss, 0, sizeof(*ss));
	if (key->family == AF_INET) {
		struct sockaddr_in *sin = (void *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = key->port;
		sin->sin_addr.s_addr = key->addr.s6_addr32[3];
		return sizeof(*sin);
	}
	sin6 = (void *)ss;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = key->port;
	sin6->sin6_addr = key->addr;
	sin6->sin6_scope_id = key->scope;
	return sizeof(*sin6);
}

static bool vxvdex_is_mcast(u16 family, const struct in6_addr *a)
{
	if (family == AF_INET)
		return ipv4_is_multicast(a->s6_addr32[3]);
	return ipv6_addr_is_multicast(a);
}

/* A multicast address whose last three bytes are the VNI. */
bool vxvdex_is_group(const struct vxvdex_sock *vs, const struct in6_addr *a)
{
	return vxvdex_is_mcast(vs->family, a) &&
	       !memcmp(&a->s6_addr[13], &vs->hdr[4], 3);
}

static bool vxvdex_is_any(u16 family, const struct in6_addr *a)
{
	if (family == AF_INET)
		return a->s6_addr32[3] == htonl(INADDR_ANY);
	return ipv6_addr_any(a);
}

/*
 * Never a peer: loopback, zero net, broadcast; for IPv6 also all of ::/96
 * (unspecified, loopback, v4-compatible) and v4-mapped addresses.
 */
static bool vxvdex_is_special(u16 family, const struct in6_addr *a)
{
	if (family == AF_INET) {
		__be32 v4 = a->s6_addr32[3];

		return ipv4_is_loopback(v4) || ipv4_is_zeronet(v4) ||
		       ipv4_is_lbcast(v4);
	}
	if (!a->s6_addr32[0] && !a->s6_addr32[1] && !a->s6_addr32[2])
		return true;
	return ipv6_addr_v4mapped(a) ||
	       !(ipv6_addr_type(a) & IPV6_ADDR_UNICAST);
}

static bool vxvdex_is_local6(const struct vxvdex_key *key)
{
	struct flowi6 fl6 = {
		.daddr = key->addr,
		.flowi6_oif = key->scope,
	};
	struct dst_entry *dst;
	bool local;

	if (ipv6_chk_addr(&init_net, &key->addr, NULL, 0))
		return true;
	/* local routes (AnyIP) are this host too: they lead to loopback */
	dst = ip6_route_output(&init_net, NULL, &fl6);
	local = !dst->error && dst->dev && dst->dev->flags & IFF_LOOPBACK;
	dst_release(dst);
	return local;
}

/* 1: one of this host's addresses, 0: unicast elsewhere, <0: refused. */
static int vxvdex_classify(const struct vxvdex_key *key)
{
	if (key->family == AF_INET) {
		switch (inet_addr_type(&init_net, key->addr.s6_addr32[3])) {
		case RTN_LOCAL:
			return 1;
		case RTN_UNICAST:
			return 0;
		default:
			return -EACCES;
		}
	}
	return vxvdex_is_local6(key) ? 1 : 0;
}

/* One of the vxvde ports the administrator allows (parameter ports). */
static bool vxvdex_port_allowed(__be16 port)
{
	u64 ports = READ_ONCE(vxvdex_ports);

	for (; ports; ports >>= 16)
		if ((u16)ports == ntohs(port))
			return true;
	return false;
}

/*
 * bind: with a port, only a group of the VNI at a vxvde port (a group
 * socket at a host service's port would reach that service's sockets
 * through multicast loopback); with port 0 any unicast
 * address or the wildcard (the lower bind refuses non-local ones), but
 * not loopback, which no allowed destination can answer from.
 */
int vxvdex_bind_allowed(const struct vxvdex_sock *vs,
			const struct vxvdex_key *key)
{
	if (key->port)
		return vxvdex_is_group(vs, &key->addr) &&
		       vxvdex_port_allowed(key->port) ? 0 : -EACCES;
	if (vxvdex_is_any(key->family, &key->addr))
		return 0;
	if (vxvdex_is_mcast(key->family, &key->addr) ||
	    vxvdex_is_special(key->family, &key->addr))
		return -EACCES;
	/* subnet broadcasts are "local" to inet_bind(), not unicast */
	if (key->family == AF_INET && vxvdex_classify(key) < 0)
		return -EACCES;
	return 0;
}

/*
 * A source worth learning as a peer: unicast elsewhere. This host's own
 * addresses never: any local user can send from them with a plain socket.
 */
bool vxvdex_learnable(const struct vxvdex_key *key)
{
	return !vxvdex_is_mcast(key->family, &key->addr) &&
	       !vxvdex_is_special(key->family, &key->addr) &&
	       vxvdex_classify(key) == 0;
}

static int vxvdex_dst_check(const struct vxvdex_sock *vs,
			    const struct vxvdex_key *key)
{
	int where;

	if (!key->port)
		return -EACCES;
	if (vxvdex_is_mcast(key->family, &key->addr))
		return vxvdex_is_group(vs, &key->addr) &&
		       vxvdex_port_allowed(key->port) &&
		       vxvdex_bound(key, false) ? 0 : -EACCES;
	if (vxvdex_is_special(key->family, &key->addr))
		return -EACCES;

	where = vxvdex_classify(key);
	if (where < 0)
		return where;
	if (where > 0)
		return vxvdex_bound(key, true) ? 0 : -EACCES;
	return vxvdex_peer_fresh(key) ? 0 : -EACCES;
}

int vxvdex_dst_allowed(const struct vxvdex_sock *vs,
		       const struct vxvdex_key *key)
{
	int err = vxvdex_dst_check(vs, key);

	if (unlikely(err)) {
		vxvdex_count(VXVDEX_TX_REFUSED_DEST);
		net_dbg_ratelimited("vni %u: destination [%pI6c]:%u refused\n",
				    vs->vni, &key->addr, ntohs(key->port));
	}
	return err;
}
