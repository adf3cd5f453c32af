# shellcheck shell=bash
# A Debian root in a directory, for tests/release/run and tests/packaging/run
# (sourced; they define die, say and cmd). The caller sets:
#   root      the directory (created by root_unpack)
#   release   bookworm or trixie
#   cache     where base roots (tar files) and apt's .deb files are kept
#   mirror, security   the Debian mirrors
# Every function that mounts has its counterpart: root_unmount removes every
# mount under $root, so a trap can always call it.

# The .deb cache of a release, bind-mounted into its roots (one per release:
# apt-get autoclean in one root would delete another release's files).
root_archives() {
	if [[ $release == bookworm ]]; then echo "$cache/archives"; else echo "$cache/archives-$release"; fi
}

root_mounted_under() {
	findmnt -rn -o TARGET | awk -v p="$1/" 'index($0 "/", p) == 1' | sort -r
}

# The root as a mount point of its own (`ip -n` and `ip netns exec` make
# "/" a slave, which fails on a plain directory), proc, sys and dev (the
# host's, as slaves), a fresh /run whose netns directory is a shared mount
# (iproute2's pins must be seen from every mount namespace, as on a booted
# system), and apt's cache.
root_mount() {
	mount --bind "$root" "$root"
	mount -t proc proc "$root/proc"
	mount --rbind /sys "$root/sys"	# with /sys/fs/cgroup, as on a booted system
	mount --make-rslave "$root/sys"
	mount --rbind /dev "$root/dev"
	mount --make-rslave "$root/dev"
	mount -t tmpfs -o mode=755 tmpfs "$root/run"
	mkdir -p "$root/run/netns" "$root/run/lock"
	mount --bind "$root/run/netns" "$root/run/netns"
	mount --make-shared "$root/run/netns"
	mkdir -p "$(root_archives)/partial"
	mount --bind "$(root_archives)" "$root/var/cache/apt/archives"
}

# Processes still running in the root (ours: nothing else runs there), by PID.
root_kill_procs() {
	local p pids=()
	for p in /proc/[0-9]*; do
		[[ $(readlink "$p/root" 2>/dev/null) == "$root" ]] && pids+=("${p#/proc/}")
	done
	((${#pids[@]})) || return 0
	say "ending processes left in the root: ${pids[*]}"
	kill -KILL "${pids[@]}" 2>/dev/null || true
}

root_unmount() {
	[[ -n ${root:-} && -d $root ]] || return 0
	local m
	for m in $(root_mounted_under "$root"); do
		umount "$m" 2>/dev/null || umount -l "$m" || true
	done
}

# root_copy_tree TREE DEST: the files a fresh clone of TREE plus its
# uncommitted work would have (no .venv, no build products).
root_copy_tree() {
	mkdir -p "$2"
	git -C "$1" ls-files -z --cached --others --exclude-standard |
		(cd "$1" && while IFS= read -r -d '' f; do
			[[ -e $f || -L $f ]] && printf '%s\0' "$f"
		done) |
		tar -C "$1" --null -T - -cf - | tar -C "$2" -xf -
	chmod 755 "$2"
}

root_run() {
	chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
		LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive INITRD=No SUDO_FORCE_REMOVE=yes "$@"
}

root_apt() {	# LOG WHAT APT-ARGS...: apt-get in the root, output appended to LOG
	local log=$1 what=$2
	shift 2
	root_run apt-get -y -q -o Dpkg::Use-Pty=0 "$@" >> "$log" 2>&1 ||
		{ tail -30 "$log"; die "$what failed (see $log)"; }
}

root_sources() {
	cat > "$root/etc/apt/sources.list" <<-EOF
	deb $mirror $release main
	deb $mirror $release-updates main
	deb $security $release-security main
	EOF
	cat > "$root/etc/apt/apt.conf.d/99vxvdex-test" <<-EOF
	Acquire::Check-Valid-Until "false";
	Acquire::Languages "none";
	EOF
}

# root_base NAME MAX_AGE_DAYS BUILD_FUNCTION [INCLUDE]: unpack the cached
# base root $cache/$release-NAME.tar into $root, or debootstrap one (minbase
# with INCLUDE, default ca-certificates) and let BUILD_FUNCTION (called with
# the root mounted) complete it, then cache it.
root_base() {
	local tar=$cache/$release-$1.tar max_age=$2 build=$3 include=${4:-ca-certificates}
	local log=${work:?}/debootstrap-$1.log
	mkdir -p "$root" "$cache"
	if [[ -f $tar && -z $(find "$tar" -mtime +"$max_age") ]]; then
		tar -C "$root" -xf "$tar"
		say "root unpacked from $tar"
		return 0
	fi
	cmd debootstrap --variant=minbase --include="$include" "$release" "$root" "$mirror" \
		> "$log" 2>&1 || { tail -30 "$log"; die "debootstrap $release failed (see $log)"; }
	root_sources
	root_mount
	root_apt "$log" "apt-get update in the new root" update
	"$build" "$log"
	root_unmount
	tar -C "$root" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
	say "root built and cached in $tar"
}
