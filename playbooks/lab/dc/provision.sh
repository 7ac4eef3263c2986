#!/bin/sh
# Turns a fresh offboard-lab-dc build container into the lab's Samba AD domain controller (realm
# lab.test, NetBIOS domain LAB). Run ONCE per image build by wrapper/offboard/lab_dc.py, piped to the
# container's shell; the container is then committed as the offboard-lab-dc:<hash> image, so `offboard
# lab up` and the molecule scenario start an already provisioned DC in seconds.
#
# What makes Samba 4.17 work in a --network none systemd container (environment.md, verified):
# nmbd masked (else a 90 s boot hang), `interfaces = lo` + `bind interfaces only = yes`, resolv.conf
# pointing at Samba's own DNS on 127.0.0.1 with an A record for the DC, and `net cache flush` after start.
set -eu
REALM=LAB.TEST
DOMAIN=LAB
STATE=/root/.offboard-lab-dc
umask 077
mkdir -p "$STATE"

# A lab password, generated per image build. Not a secret of value (the DC has no network), but it
# still lives only in root-only files on the DC, never on a command line that ends in evidence.
python3 -c 'import secrets; print("Lab-" + secrets.token_urlsafe(18))' > "$STATE/admin.pw"
printf 'username=Administrator\npassword=%s\ndomain=%s\n' "$(cat "$STATE/admin.pw")" "$DOMAIN" \
  > "$STATE/admin.auth"

# Boot-time network fix-up: docker rewrites /etc/hosts and /etc/resolv.conf on every start.
cat > /usr/local/sbin/offboard-lab-dc-net <<'EOF'
#!/bin/sh
# Samba's own DNS answers for the realm; the DC's name resolves to loopback.
printf 'search lab.test\nnameserver 127.0.0.1\n' > /etc/resolv.conf
name=$(hostname -s)
grep -q " $name.lab.test " /etc/hosts || printf '127.0.0.1 %s.lab.test %s \n' "$name" "$name" >> /etc/hosts
EOF
chmod 0755 /usr/local/sbin/offboard-lab-dc-net
cat > /etc/systemd/system/offboard-lab-dc-net.service <<'EOF'
[Unit]
Description=offboard lab: resolv.conf and hosts entry for the Samba AD DC
Before=samba-ad-dc.service
DefaultDependencies=no
After=local-fs.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/offboard-lab-dc-net

[Install]
WantedBy=multi-user.target
EOF
mkdir -p /etc/systemd/system/samba-ad-dc.service.d
cat > /etc/systemd/system/samba-ad-dc.service.d/offboard-lab.conf <<'EOF'
[Unit]
Requires=offboard-lab-dc-net.service
After=offboard-lab-dc-net.service

[Service]
# Without this, name lookups cached before Samba's DNS answered keep failing (gpo commands).
ExecStartPost=-/usr/bin/net cache flush
EOF
/usr/local/sbin/offboard-lab-dc-net

systemctl stop smbd nmbd winbind samba-ad-dc >/dev/null 2>&1 || true
systemctl disable smbd nmbd winbind >/dev/null 2>&1 || true
systemctl mask smbd nmbd winbind >/dev/null 2>&1
rm -f /etc/samba/smb.conf
rm -rf /var/lib/samba/private/* /var/lib/samba/sysvol/* /var/cache/samba/*

samba-tool domain provision \
  --realm="$REALM" --domain="$DOMAIN" --server-role=dc --dns-backend=SAMBA_INTERNAL \
  --use-rfc2307 --host-ip=127.0.0.1 \
  --adminpass="$(cat "$STATE/admin.pw")" \
  --option="interfaces = lo" --option="bind interfaces only = yes" \
  >/root/.offboard-lab-dc/provision.log 2>&1 \
  || { tail -30 /root/.offboard-lab-dc/provision.log; exit 1; }
# The KDC on loopback, named explicitly: no DNS SRV lookups needed for Kerberos.
cat > /etc/krb5.conf <<'EOF'
[libdefaults]
	default_realm = LAB.TEST
	dns_lookup_realm = false
	dns_lookup_kdc = false

[realms]
LAB.TEST = {
	kdc = 127.0.0.1
	admin_server = 127.0.0.1
	default_domain = lab.test
}

[domain_realm]
	.lab.test = LAB.TEST
	lab.test = LAB.TEST
EOF
# The administrator's keys in a root-only keytab: samba-tool then authenticates with Kerberos
# (kinit -k -t ... ; KRB5CCNAME=...; samba-tool ... --use-kerberos=required), no password anywhere.
samba-tool domain exportkeytab "$STATE/admin.keytab" --principal=Administrator@LAB.TEST >/dev/null

systemctl daemon-reload
systemctl unmask samba-ad-dc >/dev/null 2>&1 || true
systemctl enable offboard-lab-dc-net.service samba-ad-dc.service >/dev/null 2>&1
systemctl start samba-ad-dc
echo PROVISIONED
