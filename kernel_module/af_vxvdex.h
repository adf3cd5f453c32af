/* SPDX-License-Identifier: GPL-2.0 */
/*
 * AF_VXVDEX: a socket family that lets unprivileged processes exchange
 * vxvde datagrams on the VLAN of their effective gid, and nothing else.
 */
#ifndef _AF_VXVDEX_H
#define _AF_VXVDEX_H

#include <linux/in6.h>
#include <linux/net.h>
#include <linux/mutex.h>
#include <linux/atomic.h>
#include <linux/bits.h>
#include <net/sock.h>

/* The number of the long-unused AF_NETBEUI: out-of-tree modules get none. */
#define PF_VXVDEX		13

#define VXVDEX_HDR_LEN		8
#define VXVDEX_HDR_FLAGS	0x08
#define VXVDEX_VNI_LIMIT	BIT(24)
/* UDP cannot carry more, even a GRO train is cut at the IP length limit. */
#define VXVDEX_MAX_DGRAM	65535
#define VXVDEX_PEER_TTL		(128 * HZ)
#define VXVDEX_DEFAULT_PORT	14789
#define VXVDEX_MAX_PORTS	4
#define VXVDEX_MAX_SOCKETS	1048576

/* Since 6.19 bind() takes the address as a struct sockaddr_unsized (Kbuild). */
#ifdef VXVDEX_HAVE_SOCKADDR_UNSIZED
#define vxvdex_bind_addr	sockaddr_unsized
#else
#define vxvdex_bind_addr	sockaddr
#endif

/* Since 6.2-ish a family may see SOL_SOCKET setsockopt; 6.1 cannot. */
#ifdef SOCK_CUSTOM_SOCKOPT
#define VXVDEX_HAVE_CUSTOM_SOCKOPT 1
#define VXVDEX_SOL_SOCKET_FILTER 1
#else
#define VXVDEX_SOL_SOCKET_FILTER 0
#endif

/*
 * A transport address in one comparable form: IPv4 addresses are stored
 * v4-mapped, the scope is only kept for IPv6 link-local addresses.
 * No padding, so keys can be hashed and compared with memcmp().
 */
struct vxvdex_key {
	struct in6_addr addr;
	u32 vni;
	u32 scope;
	__be16 port;
	u16 family;
};

struct vxvdex_sock {
	struct sock sk;			/* first: allocated through vxvdex_proto */
	struct socket *lower;		/* UDP socket in init_net */
	struct vxvdex_binding *binding;	/* set once, under lock_sock() */
	struct vxvdex_quota *quota;	/* what this socket is counted in */
	void *rx_buf;			/* cached receive buffer, under rx_lock */
	struct mutex rx_lock;
	int rcvbuf_seen;		/* upper sk_rcvbuf last applied below */
	u32 vni;
	u16 family;
	u16 gso_size;			/* UDP_SEGMENT socket option */
	bool gro;			/* UDP_GRO on below: stays on */
	u8 hdr[VXVDEX_HDR_LEN];
};

static inline struct vxvdex_sock *vxvdex_sk(const struct sock *sk)
{
	return container_of(sk, struct vxvdex_sock, sk);
}

enum vxvdex_counter {
	VXVDEX_SOCKETS,
	VXVDEX_PEERS,
	VXVDEX_RX_DELIVERED,
	VXVDEX_RX_DROP_HEADER,
	VXVDEX_RX_DROP_TRUNC,
	VXVDEX_TX_SENT,
	VXVDEX_TX_REFUSED_HEADER,
	VXVDEX_TX_REFUSED_DEST,
	VXVDEX_PEER_EVICTED,
	VXVDEX_PEER_REFUSED,
	VXVDEX_SOCKETS_REFUSED,
	VXVDEX_NR_COUNTERS,
};

extern atomic_long_t vxvdex_counters[VXVDEX_NR_COUNTERS];

static inline void vxvdex_count(enum vxvdex_counter c)
{
	atomic_long_inc(&vxvdex_counters[c]);
}

/* main.c: module parameters, read with READ_ONCE() */
extern unsigned int vxvdex_maxttl;
extern unsigned int vxvdex_mingid;
extern unsigned int vxvdex_maxgid;
extern unsigned int vxvdex_ifindex;
extern unsigned int vxvdex_maxsockets;
extern u64 vxvdex_ports;

/* socket.c */
extern struct proto vxvdex_proto;
extern const struct net_proto_family vxvdex_family;
int vxvdex_lower_setsockopt(struct vxvdex_sock *vs, int level, int name,
			    const void *val, unsigned int len);
int vxvdex_lower_setint(struct vxvdex_sock *vs, int level, int name, int val);
int vxvdex_autobind(struct vxvdex_sock *vs);
void vxvdex_sync_rcvbuf(struct vxvdex_sock *vs);

/* sockopt.c */
int vxvdex_setsockopt(struct socket *sock, int level, int optname,
		      sockptr_t optval, unsigned int optlen);
int vxvdex_getsockopt(struct socket *sock, int level, int optname,
		      char __user *optval, int __user *optlen);

/* datagram.c */
int vxvdex_sendmsg(struct socket *sock, struct msghdr *msg, size_t len);
int vxvdex_recvmsg(struct socket *sock, struct msghdr *msg, size_t size,
		   int flags);

/* policy.c */
int vxvdex_caller_vni(u32 *vni);
void vxvdex_make_hdr(u8 *hdr, u32 vni);
bool vxvdex_segments_ok(const struct vxvdex_sock *vs, const u8 *buf,
			size_t len, unsigned int seg);
int vxvdex_key_from_sockaddr(const struct vxvdex_sock *vs,
			     const struct sockaddr *sa, int len,
			     struct vxvdex_key *key);
int vxvdex_key_to_sockaddr(const struct vxvdex_key *key,
			   struct sockaddr_storage *ss);
bool vxvdex_is_group(const struct vxvdex_sock *vs, const struct in6_addr *a);
int vxvdex_bind_allowed(const struct vxvdex_sock *vs,
			const struct vxvdex_key *key);
bool vxvdex_learnable(const struct vxvdex_key *key);
int vxvdex_dst_allowed(const struct vxvdex_sock *vs,
		       const struct vxvdex_key *key);

/* peer.c */
void vxvdex_peer_init(void);
void vxvdex_peer_learn(const struct vxvdex_key *key);
void vxvdex_peer_forget(const struct vxvdex_key *key);
bool vxvdex_peer_fresh(const struct vxvdex_key *key);
void vxvdex_peer_flush(void);

/* quota.c */
struct vxvdex_quota;
void vxvdex_quota_init(void);
int vxvdex_quota_charge(struct vxvdex_sock *vs);
void vxvdex_quota_uncharge(struct vxvdex_sock *vs);

/* binding.c */
struct vxvdex_binding;
void vxvdex_binding_init(void);
int vxvdex_binding_add(struct vxvdex_sock *vs, const struct vxvdex_key *key);
void vxvdex_binding_del(struct vxvdex_sock *vs);
bool vxvdex_bound(const struct vxvdex_key *key, bool wildcard_ok);

#endif /* _AF_VXVDEX_H */
