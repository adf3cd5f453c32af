// SPDX-License-Identifier: GPL-2.0
/*
 * Local bindings of AF_VXVDEX sockets: (VNI, address, port) of every bound
 * socket on this host. The destination rule consults it for the group
 * socket of a VNI and for the unicast sockets of other endpoints of the
 * same VNI on this host (policy.c).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/jhash.h>
#include <linux/random.h>
#include <linux/rculist.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <net/ipv6.h>

#include "af_vxvdex.h"

#define VXVDEX_BIND_BITS	10

/* One entry per distinct key, shared by the group sockets bound to it. */
struct vxvdex_binding {
	struct hlist_node node;
	struct rcu_head rcu;
	struct vxvdex_key key;
	unsigned int sockets;		/* under vxvdex_binding_lock */
};

static struct hlist_head vxvdex_bindings[1 << VXVDEX_BIND_BITS];
static DEFINE_SPINLOCK(vxvdex_binding_lock);
static u32 vxvdex_binding_seed;

void vxvdex_binding_init(void)
{
	vxvdex_binding_seed = get_random_u32();
}

/*
 * The address is part of the hash: group sockets of one VNI and port bound
 * to other groups (any address ending in the VNI's three bytes is one)
 * must not line up in the chain that every send to the real group walks.
 */
static struct hlist_head *vxvdex_binding_bucket(const struct vxvdex_key *key)
{
	u32 h = jhash2(key->addr.s6_addr32, 4,
		       jhash_2words(key->vni, (__force u32)key->port,
				    vxvdex_binding_seed));

	return &vxvdex_bindings[h & ((1 << VXVDEX_BIND_BITS) - 1)];
}

static bool vxvdex_binding_match(const struct vxvdex_key *a,
				 const struct vxvdex_key *b)
{
	return a->vni == b->vni && a->port == b->port &&
	       a->family == b->family && ipv6_addr_equal(&a->addr, &b->addr);
}

/* Under rcu_read_lock() or vxvdex_binding_lock; the scope is not compared. */
static struct vxvdex_binding *vxvdex_binding_find(const struct vxvdex_key *key)
{
	struct vxvdex_binding *b;

	hlist_for_each_entry_rcu(b, vxvdex_binding_bucket(key), node,
				 lockdep_is_held(&vxvdex_binding_lock))
		if (vxvdex_binding_match(&b->key, key))
			return b;
	return NULL;
}

/*
 * Caller holds lock_sock() of vs. Sockets bound to one key share an entry,
 * so however many endpoints share a group, its chain holds it once.
 */
int vxvdex_binding_add(struct vxvdex_sock *vs, const struct vxvdex_key *key)
{
	struct vxvdex_binding *b, *spare;

	spare = kmalloc(sizeof(*spare), GFP_KERNEL);
	if (unlikely(!spare))
		return -ENOMEM;
	spare->key = *key;
	spare->key.scope = 0;
	spare->sockets = 0;

	spin_lock(&vxvdex_binding_lock);
	b = vxvdex_binding_find(&spare->key);
	if (!b) {
		b = spare;
		spare = NULL;
		hlist_add_head_rcu(&b->node, vxvdex_binding_bucket(&b->key));
	}
	b->sockets++;
	spin_unlock(&vxvdex_binding_lock);
	kfree(spare);
	WRITE_ONCE(vs->binding, b);
	return 0;
}

/* At release: nobody else uses the socket any more. */
void vxvdex_binding_del(struct vxvdex_sock *vs)
{
	struct vxvdex_binding *b = vs->binding;

	if (!b)
		return;
	spin_lock(&vxvdex_binding_lock);
	if (--b->sockets)
		b = NULL;
	else
		hlist_del_rcu(&b->node);
	spin_unlock(&vxvdex_binding_lock);
	vs->binding = NULL;
	if (b)
		kfree_rcu(b, rcu);
}

static bool vxvdex_bound_exactly(const struct vxvdex_key *key)
{
	bool found;

	rcu_read_lock();
	found = vxvdex_binding_find(key);
	rcu_read_unlock();
	return found;
}

/*
 * Is (key->addr, key->port) bound by a socket of key->vni? With
 * wildcard_ok, a socket bound to the wildcard address counts too.
 */
bool vxvdex_bound(const struct vxvdex_key *key, bool wildcard_ok)
{
	struct vxvdex_key any;

	if (vxvdex_bound_exactly(key))
		return true;
	if (!wildcard_ok)
		return false;
	any = *key;
	any.scope = 0;
	if (key->family == AF_INET)
		ipv6_addr_set_v4mapped(htonl(INADDR_ANY), &any.addr);
	else
		any.addr = in6addr_any;
	return vxvdex_bound_exactly(&any);
}
