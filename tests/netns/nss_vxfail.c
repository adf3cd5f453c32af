/*
 * libnss_vxfail.so.2: a group "directory" that can be switched off, for the
 * directory-outage test (test_daemon_directory.py).
 *
 * It knows one group, VXFAIL_GROUP (gid VXFAIL_GID) with one member,
 * VXFAIL_MEMBER, all given with -D when the test builds it. While the file
 * VXFAIL_DOWN exists every call answers NSS_STATUS_UNAVAIL, as sssd does
 * when its LDAP server is unreachable: getgrnam/getgrgid find nothing and
 * getgrouplist quietly returns the groups of the other sources only.
 */

#include <errno.h>
#include <grp.h>
#include <nss.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum nss_status _nss_vxfail_getgrnam_r(const char *name, struct group *gr, char *buf, size_t len, int *errnop);
enum nss_status _nss_vxfail_getgrgid_r(gid_t gid, struct group *gr, char *buf, size_t len, int *errnop);
enum nss_status _nss_vxfail_initgroups_dyn(const char *user, gid_t group, long *start, long *size,
					   gid_t **groups, long limit, int *errnop);

/* Returns 1 while the directory is "down". */
static int vxfail_down(void)
{
	return access(VXFAIL_DOWN, F_OK) == 0;
}

/* Fill gr with the one group, its strings in buf. Returns an NSS status. */
static enum nss_status vxfail_fill(struct group *gr, char *buf, size_t len, int *errnop)
{
	size_t name = sizeof(VXFAIL_GROUP), member = sizeof(VXFAIL_MEMBER);
	size_t need = name + member + 1 + 2 * sizeof(char *);
	char **mem;

	if (len < need) {
		*errnop = ERANGE;
		return NSS_STATUS_TRYAGAIN;
	}
	mem = (char **)buf;
	memcpy(buf + 2 * sizeof(char *), VXFAIL_GROUP, name);
	memcpy(buf + 2 * sizeof(char *) + name, VXFAIL_MEMBER, member);
	buf[2 * sizeof(char *) + name + member] = '\0';
	mem[0] = buf + 2 * sizeof(char *) + name;
	mem[1] = NULL;
	gr->gr_name = buf + 2 * sizeof(char *);
	gr->gr_passwd = buf + 2 * sizeof(char *) + name + member;
	gr->gr_gid = VXFAIL_GID;
	gr->gr_mem = mem;
	return NSS_STATUS_SUCCESS;
}

enum nss_status _nss_vxfail_getgrnam_r(const char *name, struct group *gr, char *buf, size_t len, int *errnop)
{
	if (vxfail_down()) {
		*errnop = EHOSTDOWN;
		return NSS_STATUS_UNAVAIL;
	}
	if (strcmp(name, VXFAIL_GROUP) != 0)
		return NSS_STATUS_NOTFOUND;
	return vxfail_fill(gr, buf, len, errnop);
}

enum nss_status _nss_vxfail_getgrgid_r(gid_t gid, struct group *gr, char *buf, size_t len, int *errnop)
{
	if (vxfail_down()) {
		*errnop = EHOSTDOWN;
		return NSS_STATUS_UNAVAIL;
	}
	if (gid != VXFAIL_GID)
		return NSS_STATUS_NOTFOUND;
	return vxfail_fill(gr, buf, len, errnop);
}

enum nss_status _nss_vxfail_initgroups_dyn(const char *user, gid_t group, long *start, long *size,
					   gid_t **groups, long limit, int *errnop)
{
	gid_t *grown;

	(void)group;
	if (vxfail_down()) {
		*errnop = EHOSTDOWN;
		return NSS_STATUS_UNAVAIL;
	}
	if (strcmp(user, VXFAIL_MEMBER) != 0)
		return NSS_STATUS_NOTFOUND;
	if (*start == *size) {
		if (limit > 0 && *size >= limit)
			return NSS_STATUS_SUCCESS;
		grown = realloc(*groups, (size_t)(*size * 2) * sizeof(gid_t));
		if (grown == NULL) {
			*errnop = ENOMEM;
			return NSS_STATUS_TRYAGAIN;
		}
		*groups = grown;
		*size *= 2;
	}
	(*groups)[(*start)++] = VXFAIL_GID;
	return NSS_STATUS_SUCCESS;
}
