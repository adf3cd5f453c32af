// SPDX-License-Identifier: GPL-2.0
/*
 * AF_VXVDEX module entry: parameters, counters, init and exit.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kstrtox.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/string.h>
#include <net/net_namespace.h>

#include "af_vxvdex.h"

unsigned int vxvdex_maxttl = 1;
unsigned int vxvdex_mingid = 1000;
unsigned int vxvdex_maxgid = VXVDEX_VNI_LIMIT - 1;
unsigned int vxvdex_ifindex;
unsigned int vxvdex_maxsockets = 64;
/* Up to four ports, 16 bits each, in one word: readers see a whole list. */
u64 vxvdex_ports = VXVDEX_DEFAULT_PORT;

atomic_long_t vxvdex_counters[VXVDEX_NR_COUNTERS];

static const char * const vxvdex_counter_names[VXVDEX_NR_COUNTERS] = {
	[VXVDEX_SOCKETS]		= "sockets",
	[VXVDEX_PEERS]			= "peers",
	[VXVDEX_RX_DELIVERED]		= "rx_delivered",
	[VXVDEX_RX_DROP_HEADER]		= "rx_dropped_header",
	[VXVDEX_RX_DROP_TRUNC]		= "rx_dropped_truncated",
	[VXVDEX_TX_SENT]		= "tx_sent",
	[VXVDEX_TX_REFUSED_HEADER]	= "tx_refused_header",
	[VXVDEX_TX_REFUSED_DEST]	= "tx_refused_destination",
	[VXVDEX_PEER_EVICTED]		= "peers_evicted",
	[VXVDEX_PEER_REFUSED]		= "peers_refused",
	[VXVDEX_SOCKETS_REFUSED]	= "sockets_refused",
};

static int vxvdex_set_maxttl(const char *val, const struct kernel_param *kp)
{
	return param_set_uint_minmax(val, kp, 1, 255);
}

static int vxvdex_set_mingid(const char *val, const struct kernel_param *kp)
{
	return param_set_uint_minmax(val, kp, 0, VXVDEX_VNI_LIMIT - 1);
}

static int vxvdex_set_ifindex(const char *val, const struct kernel_param *kp)
{
	return param_set_uint_minmax(val, kp, 0, INT_MAX);
}

static int vxvdex_set_maxsockets(const char *val,
				 const struct kernel_param *kp)
{
	return param_set_uint_minmax(val, kp, 1, VXVDEX_MAX_SOCKETS);
}

/* "14789" or "14789,14790": one to four ports, 1..65535, comma-separated. */
static int vxvdex_set_ports(const char *val, const struct kernel_param *kp)
{
	char buf[32];
	char *rest, *tok;
	u64 packed = 0;
	int n = 0;
	u16 port;

	if (strscpy(buf, val, sizeof(buf)) < 0)
		return -EINVAL;
	rest = strim(buf);
	while ((tok = strsep(&rest, ","))) {
		if (n == VXVDEX_MAX_PORTS || kstrtou16(tok, 10, &port) || !port)
			return -EINVAL;
		packed |= (u64)port << (16 * n++);
	}
	WRITE_ONCE(*(u64 *)kp->arg, packed);
	return 0;
}

static int vxvdex_get_ports(char *buf, const struct kernel_param *kp)
{
	u64 packed = READ_ONCE(*(u64 *)kp->arg);
	const char *sep = "";
	int len = 0;

	for (; packed; packed >>= 16) {
		len += scnprintf(buf + len, PAGE_SIZE - len, "%s%u", sep,
				 (u16)packed);
		sep = ",";
	}
	return len + scnprintf(buf + len, PAGE_SIZE - len, "\n");
}

static const struct kernel_param_ops vxvdex_maxttl_ops = {
	.set = vxvdex_set_maxttl,
	.get = param_get_uint,
};

static const struct kernel_param_ops vxvdex_mingid_ops = {
	.set = vxvdex_set_mingid,
	.get = param_get_uint,
};

static const struct kernel_param_ops vxvdex_ifindex_ops = {
	.set = vxvdex_set_ifindex,
	.get = param_get_uint,
};

static const struct kernel_param_ops vxvdex_maxsockets_ops = {
	.set = vxvdex_set_maxsockets,
	.get = param_get_uint,
};

static const struct kernel_param_ops vxvdex_ports_ops = {
	.set = vxvdex_set_ports,
	.get = vxvdex_get_ports,
};

module_param_cb(maxttl, &vxvdex_maxttl_ops, &vxvdex_maxttl, 0644);
MODULE_PARM_DESC(maxttl, "Highest TTL / hop limit a socket may set (1..255, default 1)");
module_param_cb(mingid, &vxvdex_mingid_ops, &vxvdex_mingid, 0644);
MODULE_PARM_DESC(mingid, "Lowest effective gid allowed to create sockets (0..16777215, default 1000)");
module_param_cb(maxgid, &vxvdex_mingid_ops, &vxvdex_maxgid, 0644);
MODULE_PARM_DESC(maxgid, "Highest effective gid allowed to create sockets (0..16777215, default 16777215)");
module_param_cb(ifindex, &vxvdex_ifindex_ops, &vxvdex_ifindex, 0644);
MODULE_PARM_DESC(ifindex, "init_net interface for multicast joins and sends (0 = routing decides)");
module_param_cb(maxsockets, &vxvdex_maxsockets_ops, &vxvdex_maxsockets, 0644);
MODULE_PARM_DESC(maxsockets, "Most sockets one uid may hold on one VLAN (1..1048576, default 64)");
module_param_cb(ports, &vxvdex_ports_ops, &vxvdex_ports, 0644);
MODULE_PARM_DESC(ports, "UDP ports a group socket may bind, up to 4 (default 14789)");

static int vxvdex_stats_show(struct seq_file *seq, void *v)
{
	int i;

	for (i = 0; i < VXVDEX_NR_COUNTERS; i++)
		seq_printf(seq, "%s %ld\n", vxvdex_counter_names[i],
			   atomic_long_read(&vxvdex_counters[i]));
	/* 6.1 cannot hand SOL_SOCKET options to a family, see sockopt.c */
	seq_printf(seq, "sol_socket_filter %d\n", VXVDEX_SOL_SOCKET_FILTER);
	return 0;
}

static int __init vxvdex_init(void)
{
	int err;

	vxvdex_peer_init();
	vxvdex_binding_init();
	vxvdex_quota_init();

	err = proto_register(&vxvdex_proto, 1);
	if (unlikely(err))
		goto err_proto;

	err = sock_register(&vxvdex_family);
	if (unlikely(err))
		goto err_sock;

	if (unlikely(!proc_create_single("vxvdex", 0444, init_net.proc_net,
					 vxvdex_stats_show))) {
		err = -ENOMEM;
		goto err_proc;
	}

	pr_info("address family %d registered\n", PF_VXVDEX);
	return 0;

err_proc:
	sock_unregister(PF_VXVDEX);
err_sock:
	proto_unregister(&vxvdex_proto);
err_proto:
	pr_err("cannot register address family %d: %d\n", PF_VXVDEX, err);
	return err;
}

static void __exit vxvdex_exit(void)
{
	remove_proc_entry("vxvdex", init_net.proc_net);
	sock_unregister(PF_VXVDEX);
	proto_unregister(&vxvdex_proto);
	vxvdex_peer_flush();
	rcu_barrier();
}

module_init(vxvdex_init);
module_exit(vxvdex_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("AF_VXVDEX: vxvde datagrams pinned to the caller's effective gid");
MODULE_ALIAS_NETPROTO(PF_VXVDEX);
