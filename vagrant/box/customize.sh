# shellcheck shell=sh
# Runs inside the box's root file system (mmdebstrap's customize hook, as
# `chroot ROOTFS sh -s`): makes it a Vagrant box that boots straight from
# libvirt's <kernel> with its root on /dev/vda.
set -eu

echo "LABEL=sdn-root / ext4 defaults,errors=remount-ro 0 1" >/etc/fstab
echo sdn-box >/etc/hostname
printf '127.0.0.1 localhost\n127.0.1.1 sdn-box\n' >/etc/hosts

# eth0 by DHCP on Vagrant's management network; Vagrant appends the lab's
# private network to this file itself.
cat >/etc/network/interfaces <<'IF'
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp
IF

useradd --create-home --shell /bin/bash vagrant
install -d -m 700 -o vagrant -g vagrant /home/vagrant/.ssh
install -m 600 -o vagrant -g vagrant /tmp/vagrant.pub /home/vagrant/.ssh/authorized_keys
rm /tmp/vagrant.pub
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/vagrant
chmod 440 /etc/sudoers.d/vagrant
# No password logins at all: Vagrant logs in with its key.
passwd --lock root
echo 'UseDNS no' >/etc/ssh/sshd_config.d/vagrant.conf

# Every VM gets its own host keys and machine id on its first boot, not the
# box's.
rm -f /etc/ssh/ssh_host_*
cat >/etc/systemd/system/ssh-host-keys.service <<'UNIT'
[Unit]
Description=Generate this machine's SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
systemctl enable ssh-host-keys.service
: >/etc/machine-id
rm -f /var/lib/dbus/machine-id

# The lab's master starts etcd with its own TLS configuration; nodes run none.
systemctl disable etcd.service
apt-get clean
rm -rf /var/lib/apt/lists/*
