// SPDX-License-Identifier: GPL-2.0
/*
 * AF_VXVDEX socket life cycle: create, bind, release and the proto_ops
 * table. Every socket owns one kernel UDP socket in init_net (the "lower"
 * socket) through which all its traffic flows, whatever network namespace
 * the caller lives in.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <asm/ioctls.h>
#include <linux/sockios.h>
#include <linux/in.h>
#include <net/ipv6.h>
#include <net/net_namespace.h>

#include "af_vxvdex.h"

int vxvdex_lower_setsockopt(struct vxvdex_sock *vs, int level, int name,
			    const void *val, unsigned int len)
{
	struct socket *lower = vs->lower;

	if (level == SOL_SOCKET)
		return sock_setsockopt(lower, level, name,
				       KERNEL_SOCKPTR((void *)val), len);
	return lower->ops->setsockopt(lower, level, name,
				      KERNEL_SOCKPTR((void *)val), len);
}

int vxvdex_lower_setint(struct vxvdex_sock *vs, int level, int name, int val)
{
	return vxvdex_lower_setsockopt(vs, level, name, &val, sizeof(val));
}

/*
 * The lower socket starts with the most restrictive settings: no
 * v4-mapped traffic, only the groups this socket joined, and TTLs within
 * the administrator's limit (the kernel default unicast TTL is 64).
 */
static int vxvdex_lower_setup4(struct vxvdex_sock *vs)
{
	unsigned int ifindex = READ_ONCE(vxvdex_ifindex);
	struct ip_mreqn mreq = { .imr_ifindex = ifindex };
	int err;

	err = vxvdex_lower_setint(vs, SOL_IP, IP_MULTICAST_ALL, 0);
	if (!err)
		err = vxvdex_lower_setint(vs, SOL_IP, IP_TTL,
					  READ_ONCE(vxvdex_maxttl));
	if (!err)
		err = vxvdex_lower_setint(vs, SOL_IP, IP_MULTICAST_TTL, 1);
	if (!err && ifindex)
		err = vxvdex_lower_setsockopt(vs, SOL_IP, IP_MULTICAST_IF,
					      &mreq, sizeof(mreq));
	return err;
}

static int vxvdex_lower_setup6(struct vxvdex_sock *vs)
{
	unsigned int ifindex = READ_ONCE(vxvdex_ifindex);
	int err;

	err = ip6_sock_set_v6only(vs->lower->sk);
	if (!err)
		err = vxvdex_lower_setint(vs, SOL_IPV6, IPV6_MULTICAST_ALL, 0);
	if (!err)
		err = vxvdex_lower_setint(vs, SOL_IPV6, IPV6_UNICAST_HOPS,
					  READ_ONCE(vxvdex_maxttl));
	if (!err)
		err = vxvdex_lower_setint(vs, SOL_IPV6, IPV6_MULTICAST_HOPS, 1);
	if (!err && ifindex)
		err = vxvdex_lower_setint(vs, SOL_IPV6, IPV6_MULTICAST_IF,
					  ifindex);
	return err;
}

static int vxvdex_lower_set_reuse(struct vxvdex_sock *vs, int on)
{
	return vxvdex_lower_setint(vs, SOL_SOCKET, SO_REUSEADDR, on);
}

/*
 * SO_RCVBUF on 6.1 lands on the upper sock (see sockopt.c); carry it
 * down, capped like SO_RCVBUF (an upper SO_RCVBUFFORCE is not honoured).
 */
void vxvdex_sync_rcvbuf(struct vxvdex_sock *vs)
{
#ifndef VXVDEX_HAVE_CUSTOM_SOCKOPT
	int want = READ_ONCE(vs->sk.sk_rcvbuf);
	int got;

	if (likely(want == READ_ONCE(vs->rcvbuf_seen)))
		return;
	vxvdex_lower_setint(vs, SOL_SOCKET, SO_RCVBUF, want / 2);
	got = READ_ONCE(vs->lower->sk->sk_rcvbuf);
	WRITE_ONCE(vs->sk.sk_rcvbuf, got);
	WRITE_ONCE(vs->rcvbuf_seen, got);
#endif
}

/* Caller holds lock_sock(); key has been checked by vxvdex_bind_allowed(). */
static int vxvdex_bind_locked(struct vxvdex_sock *vs, struct vxvdex_key *key)
{
	struct sockaddr_storage ss;
	bool group = key->port != 0;
	int len, err;

	if (vs->binding)
		return -EINVAL;

	/* Only group sockets share a port; unicast ports stay exclusive. */
	if (group) {
		err = vxvdex_lower_set_reuse(vs, 1);
		if (err)
			return err;
	}
	len = vxvdex_key_to_sockaddr(key, &ss);
	err = kernel_bind(vs->lower, (struct vxvdex_bind_addr *)&ss, len);
	if (!err)
		err = kernel_getsockname(vs->lower, (struct sockaddr *)&ss);
	if (err >= 0)
		err = vxvdex_key_from_sockaddr(vs, (struct sockaddr *)&ss, err,
					       key);
	if (!err)
		err = vxvdex_binding_add(vs, key);
	if (err && group)
		vxvdex_lower_set_reuse(vs, 0);
	return err;
}

static int vxvdex_bind(struct socket *sock, struct vxvdex_bind_addr *uaddr,
		       int len)
{
	struct vxvdex_sock *vs = vxvdex_sk(sock->sk);
	struct vxvdex_key key;
	int err;

	err = vxvdex_key_from_sockaddr(vs, (struct sockaddr *)uaddr, len, &key);
	if (err)
		return err;
	err = vxvdex_bind_allowed(vs, &key);
	if (err)
		return err;

	vxvdex_sync_rcvbuf(vs);
	lock_sock(sock->sk);
	err = vxvdex_bind_locked(vs, &key);
	release_sock(sock->sk);
	return err;
}

/* Sending from an unbound socket binds it, so its port is on record. */
int vxvdex_autobind(struct vxvdex_sock *vs)
{
	struct vxvdex_key any = { .family = vs->family, .vni = vs->vni };
	int err = 0;

	if (likely(READ_ONCE(vs->binding)))
		return 0;
	if (vs->family == AF_INET)
		ipv6_addr_set_v4mapped(htonl(INADDR_ANY), &any.addr);
	lock_sock(&vs->sk);
	if (!vs->binding)
		err = vxvdex_bind_locked(vs, &any);
	release_sock(&vs->sk);
	return err;
}

static int vxvdex_getname(struct socket *sock, struct sockaddr *uaddr,
			  int peer)
{
	if (peer)
		return -ENOTCONN;
	return kernel_getsockname(vxvdex_sk(sock->sk)->lower, uaddr);
}

/*
 * The lower socket's wait queue is the one its sk_data_ready wakes, so
 * poll, select and epoll on our file wait there. epoll unhooks itself in
 * __fput() before our release frees the lower socket.
 */
static __poll_t vxvdex_poll(struct file *file, struct socket *sock,
			    struct poll_table_struct *wait)
{
	struct vxvdex_sock *vs = vxvdex_sk(sock->sk);

	vxvdex_sync_rcvbuf(vs);
	return vs->lower->ops->poll(file, vs->lower, wait);
}

static int vxvdex_ioctl(struct socket *sock, unsigned int cmd,
			unsigned long arg)
{
	struct socket *lower = vxvdex_sk(sock->sk)->lower;

	/* Only queue sizes: other inet ioctls would act on init_net. */
	if (cmd != SIOCINQ && cmd != SIOCOUTQ)
		return -ENOIOCTLCMD;
	return lower->ops->ioctl(lower, cmd, arg);
}

static int vxvdex_release(struct socket *sock)
{
	struct sock *sk = sock->sk;
	struct vxvdex_sock *vs;

	if (!sk)
		return 0;
	vs = vxvdex_sk(sk);

	vxvdex_binding_del(vs);
	vxvdex_quota_uncharge(vs);
	sock_release(vs->lower);
	vs->lower = NULL;
	kvfree(vs->rx_buf);
	mutex_destroy(&vs->rx_lock);

	sock_orphan(sk);
	sock->sk = NULL;
	atomic_long_dec(&vxvdex_counters[VXVDEX_SOCKETS]);
	sock_put(sk);
	return 0;
}

static const struct proto_ops vxvdex_ops = {
	.family		= PF_VXVDEX,
	.owner		= THIS_MODULE,
	.release	= vxvdex_release,
	.bind		= vxvdex_bind,
	.connect	= sock_no_connect,
	.socketpair	= sock_no_socketpair,
	.accept		= sock_no_accept,
	.getname	= vxvdex_getname,
	.poll		= vxvdex_poll,
	.ioctl		= vxvdex_ioctl,
	.listen		= sock_no_listen,
	.shutdown	= sock_no_shutdown,
	.setsockopt	= vxvdex_setsockopt,
	.getsockopt	= vxvdex_getsockopt,
	.sendmsg	= vxvdex_sendmsg,
	.recvmsg	= vxvdex_recvmsg,
	.mmap		= sock_no_mmap,
};

struct proto vxvdex_proto = {
	.name		= "AF_VXVDEX",
	.owner		= THIS_MODULE,
	.obj_size	= sizeof(struct vxvdex_sock),
};

static int vxvdex_lower_create(struct vxvdex_sock *vs)
{
	int err;

	err = sock_create_kern(&init_net, vs->family, SOCK_DGRAM, IPPROTO_UDP,
			       &vs->lower);
	if (unlikely(err))
		return err;

	if (vs->family == AF_INET)
		err = vxvdex_lower_setup4(vs);
	else
		err = vxvdex_lower_setup6(vs);
	if (unlikely(err)) {
		sock_release(vs->lower);
		vs->lower = NULL;
	}
	return err;
}

static int vxvdex_create(struct net *net, struct socket *sock, int protocol,
			 int kern)
{
	struct vxvdex_sock *vs;
	struct sock *sk;
	u32 vni;
	int err;

	if (sock->type != SOCK_DGRAM)
		return -ESOCKTNOSUPPORT;
	if (protocol != AF_INET && protocol != AF_INET6)
		return -EPROTONOSUPPORT;
	err = vxvdex_caller_vni(&vni);
	if (err)
		return err;

	sk = sk_alloc(net, PF_VXVDEX, GFP_KERNEL, &vxvdex_proto, kern);
	if (unlikely(!sk))
		return -ENOMEM;
	sock_init_data(sock, sk);
	sk->sk_protocol = protocol;

	vs = vxvdex_sk(sk);
	vs->family = protocol;
	vs->vni = vni;
	vxvdex_make_hdr(vs->hdr, vni);
	mutex_init(&vs->rx_lock);

	err = vxvdex_quota_charge(vs);
	if (unlikely(err))
		goto err_free;
	err = vxvdex_lower_create(vs);
	if (unlikely(err))
		goto err_uncharge;
	vs->rcvbuf_seen = READ_ONCE(sk->sk_rcvbuf);

	sock->ops = &vxvdex_ops;
#ifdef VXVDEX_HAVE_CUSTOM_SOCKOPT
	set_bit(SOCK_CUSTOM_SOCKOPT, &sock->flags);
#endif
	atomic_long_inc(&vxvdex_counters[VXVDEX_SOCKETS]);
	return 0;

err_uncharge:
	vxvdex_quota_uncharge(vs);
err_free:
	mutex_destroy(&vs->rx_lock);
	sock_orphan(sk);
	sock->sk = NULL;
	sock_put(sk);
	return err;
}

const struct net_proto_family vxvdex_family = {
	.family	= PF_VXVDEX,
	.create	= vxvdex_create,
	.owner	= THIS_MODULE,
};
