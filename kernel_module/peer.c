// SPDX-License-Identifier: GPL-2.0
/*
 * Learned peers: (VNI, address, port) -> when a valid datagram of that VNI
 * last came from there. A unicast destination must be in this table and
 * fresh (128 s, the protocol's MAC table expiry).
 *
 * Anyone on the LAN can send a datagram with any header, so the table is
 * bounded: a keyed hash (siphash, random key) spreads entries over 2048
 * buckets of at most 8. One VLAN must not crowd out another, so a VNI
 * holds at most 2 entries of a bucket (at most 4096 in all), and a new
 * entry only ever replaces an expired one or its own VNI's oldest: when a
 * bucket is full of other VNIs' live entries the sender is not learned.
 * This host's own addresses are never learned (see vxvdex_learnable()).
 * Lookups are RCU; insertions and removals take one spinlock (they are
 * rare: refreshing an entry only stores the time).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/jiffies.h>
#include <linux/rculist.h>
#include <linux/siphash.h>
#include <linux/slab.h>
#include <linux/spinlock.h>

#include "af_vxvdex.h"

#define VXVDEX_PEER_BITS	11
#define VXVDEX_PEER_DEPTH	8
#define VXVDEX_PEER_PER_VNI	2	/* per bucket: no VNI fills one */

struct vxvdex_peer {
	struct hlist_node node;
	struct rcu_head rcu;
	struct vxvdex_key key;
	unsigned long seen;
};

static struct hlist_head vxvdex_peers[1 << VXVDEX_PEER_BITS];
static DEFINE_SPINLOCK(vxvdex_peer_lock);
static siphash_key_t vxvdex_peer_secret;

void vxvdex_peer_init(void)
{
	get_random_bytes(&vxvdex_peer_secret, sizeof(vxvdex_peer_secret));
}

static struct hlist_head *vxvdex_peer_bucket(const struct vxvdex_key *key)
{
	u64 h = siphash(key, sizeof(*key), &vxvdex_peer_secret);

	return &vxvdex_peers[h & ((1 << VXVDEX_PEER_BITS) - 1)];
}

/* Under rcu_read_lock() or vxvdex_peer_lock. */
static struct vxvdex_peer *vxvdex_peer_find(struct hlist_head *head,
					    const struct vxvdex_key *key)
{
	struct vxvdex_peer *p;

	hlist_for_each_entry_rcu(p, head, node,
				 lockdep_is_held(&vxvdex_peer_lock))
		if (!memcmp(&p->key, key, sizeof(*key)))
			return p;
	return NULL;
}

static bool vxvdex_peer_expired(const struct vxvdex_peer *p)
{
	return time_after_eq(jiffies, READ_ONCE(p->seen) + VXVDEX_PEER_TTL);
}

bool vxvdex_peer_fresh(const struct vxvdex_key *key)
{
	struct vxvdex_peer *p;
	bool fresh;

	rcu_read_lock();
	p = vxvdex_peer_find(vxvdex_peer_bucket(key), key);
	fresh = p && !vxvdex_peer_expired(p);
	rcu_read_unlock();
	return fresh;
}

static void vxvdex_peer_del(struct vxvdex_peer *p)
{
	hlist_del_rcu(&p->node);
	kfree_rcu(p, rcu);
	atomic_long_dec(&vxvdex_counters[VXVDEX_PEERS]);
}

/*
 * Under vxvdex_peer_lock: drop expired entries, then make room for one
 * more entry of vni, at the expense of vni's own oldest entry only.
 * False if the bucket is full of other VNIs' live entries.
 */
static bool vxvdex_peer_make_room(struct hlist_head *head, u32 vni)
{
	struct vxvdex_peer *p, *oldest = NULL;
	struct hlist_node *tmp;
	int n = 0, own = 0;

	hlist_for_each_entry_safe(p, tmp, head, node) {
		if (vxvdex_peer_expired(p)) {
			vxvdex_peer_del(p);
			continue;
		}
		n++;
		if (p->key.vni != vni)
			continue;
		own++;
		if (!oldest || time_before(READ_ONCE(p->seen),
					   READ_ONCE(oldest->seen)))
			oldest = p;
	}
	if (own < VXVDEX_PEER_PER_VNI && n < VXVDEX_PEER_DEPTH)
		return true;
	if (!oldest)
		return false;
	vxvdex_peer_del(oldest);
	vxvdex_count(VXVDEX_PEER_EVICTED);
	return true;
}

static bool vxvdex_peer_touch(struct hlist_head *head,
			      const struct vxvdex_key *key)
{
	struct vxvdex_peer *p;
	unsigned long now = jiffies;

	rcu_read_lock();
	p = vxvdex_peer_find(head, key);
	if (p && READ_ONCE(p->seen) != now)
		WRITE_ONCE(p->seen, now);
	rcu_read_unlock();
	return p;
}

void vxvdex_peer_learn(const struct vxvdex_key *key)
{
	struct hlist_head *head = vxvdex_peer_bucket(key);
	struct vxvdex_peer *p;

	if (likely(vxvdex_peer_touch(head, key)))
		return;
	if (!vxvdex_learnable(key))
		return;

	p = kmalloc(sizeof(*p), GFP_KERNEL);
	if (unlikely(!p))
		return;
	p->key = *key;
	p->seen = jiffies;

	spin_lock(&vxvdex_peer_lock);
	if (vxvdex_peer_find(head, key)) {
		spin_unlock(&vxvdex_peer_lock);
		kfree(p);
		return;
	}
	if (!vxvdex_peer_make_room(head, key->vni)) {
		spin_unlock(&vxvdex_peer_lock);
		kfree(p);
		vxvdex_count(VXVDEX_PEER_REFUSED);
		return;
	}
	hlist_add_head_rcu(&p->node, head);
	atomic_long_inc(&vxvdex_counters[VXVDEX_PEERS]);
	spin_unlock(&vxvdex_peer_lock);
}

void vxvdex_peer_forget(const struct vxvdex_key *key)
{
	struct hlist_head *head = vxvdex_peer_bucket(key);
	struct vxvdex_peer *p;

	spin_lock(&vxvdex_peer_lock);
	p = vxvdex_peer_find(head, key);
	if (p)
		vxvdex_peer_del(p);
	spin_unlock(&vxvdex_peer_lock);
}

/* Module exit: no socket is left, so no reader either. */
void vxvdex_peer_flush(void)
{
	struct vxvdex_peer *p;
	struct hlist_node *tmp;
	int i;

	spin_lock(&vxvdex_peer_lock);
	for (i = 0; i < ARRAY_SIZE(vxvdex_peers); i++)
		hlist_for_each_entry_safe(p, tmp, &vxvdex_peers[i], node)
			vxvdex_peer_del(p);
	spin_unlock(&vxvdex_peer_lock);
}
