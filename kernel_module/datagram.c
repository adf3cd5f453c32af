// SPDX-License-Identifier: GPL-2.0
/*
 * AF_VXVDEX data path. A datagram crosses user memory exactly once in each
 * direction: on send it is copied into a kernel buffer, checked there and
 * handed to the lower socket from there (a racing thread cannot change
 * what was checked); on receive it lands in a kernel buffer, is checked
 * whole, and only a valid datagram is copied to the caller.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ipv6.h>
#include <linux/mm.h>
#include <linux/sched.h>
#include <linux/socket.h>
#include <linux/udp.h>
#include <linux/uio.h>
#include <net/sock.h>

#include "af_vxvdex.h"

#define VXVDEX_SEND_FLAGS	(MSG_DONTWAIT | MSG_NOSIGNAL | MSG_BATCH | \
				 MSG_CMSG_COMPAT)
#define VXVDEX_RECV_FLAGS	(MSG_DONTWAIT | MSG_TRUNC | MSG_WAITALL | \
				 MSG_NOSIGNAL | MSG_CMSG_COMPAT | \
				 MSG_CMSG_CLOEXEC)
#define VXVDEX_RXBUF_SIZE	(VXVDEX_MAX_DGRAM + 1)

/* The only control message a sender may pass is UDP_SEGMENT. */
static int vxvdex_send_cmsgs(const struct vxvdex_sock *vs, struct msghdr *msg,
			     u16 *gso)
{
	struct cmsghdr *cmsg;

	*gso = READ_ONCE(vs->gso_size);
	if (!msg->msg_controllen)
		return 0;
	if (unlikely(msg->msg_control_is_user))
		return -EINVAL;
	for_each_cmsghdr(cmsg, msg) {
		if (!CMSG_OK(msg, cmsg))
			return -EINVAL;
		if (cmsg->cmsg_level != SOL_UDP ||
		    cmsg->cmsg_type != UDP_SEGMENT ||
		    cmsg->cmsg_len != CMSG_LEN(sizeof(u16)))
			return -EACCES;
		*gso = *(u16 *)CMSG_DATA(cmsg);
	}
	return 0;
}

static int vxvdex_send_lower(struct vxvdex_sock *vs,
			     const struct vxvdex_key *dst, void *buf,
			     size_t len, u16 gso, unsigned int flags)
{
	union {
		struct cmsghdr hdr;
		u8 space[CMSG_SPACE(sizeof(u16))];
	} ctl;
	struct sockaddr_storage ss;
	struct kvec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr kmsg = {
		.msg_name = &ss,
		.msg_flags = flags & (MSG_DONTWAIT | MSG_NOSIGNAL),
	};

	kmsg.msg_namelen = vxvdex_key_to_sockaddr(dst, &ss);
	if (gso) {
		ctl.hdr.cmsg_level = SOL_UDP;
		ctl.hdr.cmsg_type = UDP_SEGMENT;
		ctl.hdr.cmsg_len = CMSG_LEN(sizeof(u16));
		*(u16 *)CMSG_DATA(&ctl.hdr) = gso;
		kmsg.msg_control = &ctl;
		kmsg.msg_controllen = sizeof(ctl);
	}
	return kernel_sendmsg(vs->lower, &kmsg, &iov, 1, len);
}

/*
 * Validation order: flags, length, address, control messages; then the
 * single copy (which the caller can stall as long as it likes, e.g. on a
 * FUSE-backed page), and only then the checks of what is sent and where
 * to, right before the send: the header of the copy, the destination.
 */
int vxvdex_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
{
	struct vxvdex_sock *vs = vxvdex_sk(sock->sk);
	struct vxvdex_key dst;
	void *buf;
	u16 gso;
	int err;

	if (unlikely(msg->msg_flags & ~VXVDEX_SEND_FLAGS))
		return -EOPNOTSUPP;
	if (unlikely(len > VXVDEX_MAX_DGRAM))
		return -EMSGSIZE;
	if (unlikely(!msg->msg_name))
		return -EDESTADDRREQ;
	err = vxvdex_key_from_sockaddr(vs, msg->msg_name, msg->msg_namelen,
				       &dst);
	if (unlikely(err))
		return err;
	err = vxvdex_send_cmsgs(vs, msg, &gso);
	if (unlikely(err))
		return err;

	buf = kvmalloc(max_t(size_t, len, 1), GFP_KERNEL_ACCOUNT);
	if (unlikely(!buf))
		return -ENOBUFS;
	if (unlikely(!copy_from_iter_full(buf, len, &msg->msg_iter))) {
		err = -EFAULT;
		goto out;
	}
	if (unlikely(!vxvdex_segments_ok(vs, buf, len, gso))) {
		vxvdex_count(VXVDEX_TX_REFUSED_HEADER);
		net_dbg_ratelimited("vni %u: send with a foreign header refused\n",
				    vs->vni);
		err = -EACCES;
		goto out;
	}
	err = vxvdex_dst_allowed(vs, &dst);
	if (unlikely(err))
		goto out;
	err = vxvdex_autobind(vs);
	if (unlikely(err))
		goto out;
	err = vxvdex_send_lower(vs, &dst, buf, len, gso, msg->msg_flags);
	if (err >= 0)
		vxvdex_count(VXVDEX_TX_SENT);
out:
	kvfree(buf);
	return err;
}

/* What the lower socket told about one datagram. */
struct vxvdex_rx {
	struct sockaddr_storage from;
	int fromlen;
	int gro;			/* UDP_GRO segment size, 0: none */
	int pktinfo_len;		/* 0: no pktinfo */
	int pktinfo_level;		/* SOL_IP (0) or SOL_IPV6 */
	int pktinfo_type;
	union {
		struct in_pktinfo v4;
		struct in6_pktinfo v6;
	} pktinfo;
};

static void vxvdex_parse_cmsgs(struct vxvdex_rx *rx, void *ctl, size_t len)
{
	struct msghdr m = { .msg_control = ctl, .msg_controllen = len };
	struct cmsghdr *cmsg;

	for_each_cmsghdr(cmsg, &m) {
		size_t dlen = cmsg->cmsg_len - CMSG_LEN(0);

		if (!CMSG_OK(&m, cmsg))
			break;
		if (cmsg->cmsg_level == SOL_UDP && cmsg->cmsg_type == UDP_GRO &&
		    dlen >= sizeof(int)) {
			rx->gro = *(int *)CMSG_DATA(cmsg);
		} else if ((cmsg->cmsg_level == SOL_IP &&
			    cmsg->cmsg_type == IP_PKTINFO &&
			    dlen >= sizeof(struct in_pktinfo)) ||
			   (cmsg->cmsg_level == SOL_IPV6 &&
			    cmsg->cmsg_type == IPV6_PKTINFO &&
			    dlen >= sizeof(struct in6_pktinfo))) {
			rx->pktinfo_level = cmsg->cmsg_level;
			rx->pktinfo_type = cmsg->cmsg_type;
			rx->pktinfo_len = cmsg->cmsg_level == SOL_IP ?
					  sizeof(struct in_pktinfo) :
					  sizeof(struct in6_pktinfo);
			memcpy(&rx->pktinfo, CMSG_DATA(cmsg), rx->pktinfo_len);
		}
	}
}

/* One datagram from the lower socket into buf; its length or -errno. */
static int vxvdex_recv_lower(struct vxvdex_sock *vs, void *buf, int flags,
			     struct vxvdex_rx *rx)
{
	u64 ctl[16];	/* pktinfo and UDP_GRO, aligned for cmsghdr */
	struct kvec iov = { .iov_base = buf, .iov_len = VXVDEX_RXBUF_SIZE };
	struct msghdr kmsg = {
		.msg_name = &rx->from,
		.msg_namelen = sizeof(rx->from),
		.msg_control = ctl,
		.msg_controllen = sizeof(ctl),
	};
	int n;

	n = kernel_recvmsg(vs->lower, &kmsg, &iov, 1, VXVDEX_RXBUF_SIZE,
			   flags & MSG_DONTWAIT);
	if (n < 0)
		return n;
	rx->fromlen = kmsg.msg_namelen;
	rx->gro = 0;
	rx->pktinfo_len = 0;
	vxvdex_parse_cmsgs(rx, ctl, sizeof(ctl) - kmsg.msg_controllen);
	/* without its UDP_GRO message a train could not be checked whole */
	if (unlikely(kmsg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		vxvdex_count(VXVDEX_RX_DROP_TRUNC);
		return -EMSGSIZE;
	}
	return n;
}

static bool vxvdex_rx_ok(struct vxvdex_sock *vs, const void *buf, int n,
			 const struct vxvdex_rx *rx)
{
	if (rx->gro < 0 || rx->gro > VXVDEX_MAX_DGRAM)
		return false;
	return vxvdex_segments_ok(vs, buf, n, rx->gro);
}

/* A valid datagram refreshes its sender; a header-only one is a leave. */
static void vxvdex_learn(struct vxvdex_sock *vs, const struct vxvdex_rx *rx,
			 int n)
{
	struct vxvdex_key key;

	if (vxvdex_key_from_sockaddr(vs, (struct sockaddr *)&rx->from,
				     rx->fromlen, &key))
		return;
	if (n == VXVDEX_HDR_LEN)
		vxvdex_peer_forget(&key);
	else
		vxvdex_peer_learn(&key);
}

static int vxvdex_deliver(struct msghdr *msg, size_t size, int flags,
			  const void *buf, int n, struct vxvdex_rx *rx)
{
	size_t copied = min_t(size_t, n, size);

	if (copy_to_iter(buf, copied, &msg->msg_iter) != copied)
		return -EFAULT;
	if (msg->msg_name) {
		memcpy(msg->msg_name, &rx->from, rx->fromlen);
		msg->msg_namelen = rx->fromlen;
	}
	if (rx->pktinfo_len)
		put_cmsg(msg, rx->pktinfo_level, rx->pktinfo_type,
			 rx->pktinfo_len, &rx->pktinfo);
	if (rx->gro)
		put_cmsg(msg, SOL_UDP, UDP_GRO, sizeof(rx->gro), &rx->gro);
	if (copied < (size_t)n)
		msg->msg_flags |= MSG_TRUNC;
	return flags & MSG_TRUNC ? n : copied;
}

/*
 * The socket keeps one 64 KiB buffer for the common single reader; a
 * concurrent reader allocates its own rather than waiting for it. Both
 * are charged to the reader's memory cgroup: the cached one lives as long
 * as the socket.
 */
static void *vxvdex_rxbuf_get(struct vxvdex_sock *vs, bool *cached)
{
	*cached = mutex_trylock(&vs->rx_lock);
	if (*cached) {
		if (!vs->rx_buf)
			vs->rx_buf = kvmalloc(VXVDEX_RXBUF_SIZE,
					      GFP_KERNEL_ACCOUNT);
		if (vs->rx_buf)
			return vs->rx_buf;
		mutex_unlock(&vs->rx_lock);
		*cached = false;
	}
	return kvmalloc(VXVDEX_RXBUF_SIZE, GFP_KERNEL_ACCOUNT);
}

static void vxvdex_rxbuf_put(struct vxvdex_sock *vs, void *buf, bool cached)
{
	if (cached)
		mutex_unlock(&vs->rx_lock);
	else
		kvfree(buf);
}

int vxvdex_recvmsg(struct socket *sock, struct msghdr *msg, size_t size,
		   int flags)
{
	struct vxvdex_sock *vs = vxvdex_sk(sock->sk);
	struct vxvdex_rx rx;
	bool cached;
	void *buf;
	int n;

	if (unlikely(flags & ~VXVDEX_RECV_FLAGS))
		return -EOPNOTSUPP;
	vxvdex_sync_rcvbuf(vs);

	buf = vxvdex_rxbuf_get(vs, &cached);
	if (unlikely(!buf))
		return -ENOMEM;

	/* Bad datagrams are consumed and counted, never shown in part. */
	for (;;) {
		n = vxvdex_recv_lower(vs, buf, flags, &rx);
		if (n >= 0 && likely(vxvdex_rx_ok(vs, buf, n, &rx)))
			break;
		if (n < 0 && n != -EMSGSIZE)
			break;
		if (n >= 0) {
			vxvdex_count(VXVDEX_RX_DROP_HEADER);
			net_dbg_ratelimited("vni %u: dropped a datagram with a foreign header\n",
					    vs->vni);
		}
		cond_resched();
	}
	if (n >= 0) {
		vxvdex_count(VXVDEX_RX_DELIVERED);
		vxvdex_learn(vs, &rx, n);
		n = vxvdex_deliver(msg, size, flags, buf, n, &rx);
	}

	vxvdex_rxbuf_put(vs, buf, cached);
	return n;
}
