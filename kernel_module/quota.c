// SPDX-License-Identifier: GPL-2.0
/*
 * Sockets per uid and VLAN. Every unicast socket holds an ephemeral UDP
 * port of the initial network namespace and every socket a kernel UDP
 * socket: without a bound one user could exhaust both for the host. The
 * count is kept per (uid, VNI) rather than per uid because all of
 * vxvdexd's endpoints run as one system user, one VLAN each; a user
 * reaches only the VLANs of the groups it holds. Holders of CAP_NET_ADMIN
 * in the initial user namespace are not counted.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/jhash.h>
#include <linux/random.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uidgid.h>

#include "af_vxvdex.h"

#define VXVDEX_QUOTA_BITS	8

struct vxvdex_quota {
	struct hlist_node node;
	kuid_t uid;
	u32 vni;
	unsigned int sockets;
};

static struct hlist_head vxvdex_quotas[1 << VXVDEX_QUOTA_BITS];
static DEFINE_SPINLOCK(vxvdex_quota_lock);
static u32 vxvdex_quota_seed;

void vxvdex_quota_init(void)
{
	vxvdex_quota_seed = get_random_u32();
}

static struct hlist_head *vxvdex_quota_bucket(kuid_t uid, u32 vni)
{
	u32 h = jhash_2words(__kuid_val(uid), vni, vxvdex_quota_seed);

	return &vxvdex_quotas[h & ((1 << VXVDEX_QUOTA_BITS) - 1)];
}

/* Under vxvdex_quota_lock. */
static struct vxvdex_quota *vxvdex_quota_find(struct hlist_head *head,
					      kuid_t uid, u32 vni)
{
	struct vxvdex_quota *q;

	hlist_for_each_entry(q, head, node)
		if (uid_eq(q->uid, uid) && q->vni == vni)
			return q;
	return NULL;
}

/* Count vs against its creator; -EMFILE past maxsockets. */
int vxvdex_quota_charge(struct vxvdex_sock *vs)
{
	kuid_t uid = current_uid();
	struct hlist_head *head = vxvdex_quota_bucket(uid, vs->vni);
	struct vxvdex_quota *q, *spare;
	int err = 0;

	if (ns_capable_noaudit(&init_user_ns, CAP_NET_ADMIN))
		return 0;
	spare = kzalloc(sizeof(*spare), GFP_KERNEL);
	if (unlikely(!spare))
		return -ENOMEM;

	spin_lock(&vxvdex_quota_lock);
	q = vxvdex_quota_find(head, uid, vs->vni);
	if (!q) {
		q = spare;
		spare = NULL;
		q->uid = uid;
		q->vni = vs->vni;
		hlist_add_head(&q->node, head);
	}
	if (q->sockets < READ_ONCE(vxvdex_maxsockets)) {
		q->sockets++;
		vs->quota = q;
	} else {
		err = -EMFILE;
	}
	spin_unlock(&vxvdex_quota_lock);
	kfree(spare);
	if (err)
		vxvdex_count(VXVDEX_SOCKETS_REFUSED);
	return err;
}

void vxvdex_quota_uncharge(struct vxvdex_sock *vs)
{
	struct vxvdex_quota *q = vs->quota;

	if (!q)
		return;
	spin_lock(&vxvdex_quota_lock);
	if (!--q->sockets)
		hlist_del(&q->node);
	else
		q = NULL;
	spin_unlock(&vxvdex_quota_lock);
	vs->quota = NULL;
	kfree(q);
}
