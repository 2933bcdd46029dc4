#!/usr/bin/env python3
"""Makes the certificates the TLS tests use, into DIR (PEM files), with
Debian's python3-cryptography:

  ca.pem                     the CA that signs the others (key ca.key)
  server.pem, server.key     SANs localhost, 127.0.0.1 and ::1, serverAuth
  server_encrypted.key       server.key, encrypted with "correct horse"
  client.pem, client.key     CN gateway, SAN DNS:gateway, clientAuth
  other_ca.pem               another CA (key other_ca.key)
  other_client.pem/.key      a client certificate signed by other_ca
  other_server.pem/.key      a server certificate signed by other_ca
  expired.pem/.key           a server certificate that expired yesterday
  not_yet.pem/.key           one valid from tomorrow
  self_signed.pem/.key       one signed by its own key
  elsewhere.pem/.key         one for elsewhere.example only
  garbage.pem                not PEM at all

  tests/support/make_certs.py DIR
"""
import datetime
import ipaddress
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
now = datetime.datetime.now(datetime.timezone.utc)
day = datetime.timedelta(days=1)


def key():
    return ec.generate_private_key(ec.SECP256R1())


def write_key(name, k, passphrase=None):
    enc = (serialization.BestAvailableEncryption(passphrase) if passphrase
           else serialization.NoEncryption())
    with open(os.path.join(out, name), "wb") as f:
        f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))


def write_cert(name, cert):
    with open(os.path.join(out, name), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def cert(cn, k, issuer_cert=None, issuer_key=None, *, ca=False, names=(), usage=None,
         not_before=None, not_after=None):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tern tests")])
    b = (x509.CertificateBuilder()
         .subject_name(subject)
         .issuer_name(issuer_cert.subject if issuer_cert else subject)
         .public_key(k.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(not_before or now - day)
         .not_valid_after(not_after or now + 30 * day)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, key_cert_sign=True, crl_sign=True,
                                          encipher_only=False, decipher_only=False), critical=True)
    if names:
        alt = []
        for n in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                alt.append(x509.DNSName(n))
        b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    if usage:
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return b.sign(issuer_key or k, hashes.SHA256())


def leaf(name, cn, names, usage, issuer, issuer_key, **dates):
    k = key()
    write_key(name + ".key", k)
    c = cert(cn, k, issuer, issuer_key, names=names, usage=usage, **dates)
    write_cert(name + ".pem", c)
    return k, c


ca_key = key()
ca = cert("tern test CA", ca_key, ca=True)
write_key("ca.key", ca_key)
write_cert("ca.pem", ca)
other_key = key()
other = cert("another CA", other_key, ca=True)
write_key("other_ca.key", other_key)
write_cert("other_ca.pem", other)

server = ExtendedKeyUsageOID.SERVER_AUTH
client = ExtendedKeyUsageOID.CLIENT_AUTH
server_key, _ = leaf("server", "localhost", ["localhost", "127.0.0.1", "::1"], server, ca, ca_key)
write_key("server_encrypted.key", server_key, b"correct horse")
leaf("client", "gateway", ["gateway"], client, ca, ca_key)
leaf("other_client", "gateway", ["gateway"], client, other, other_key)
leaf("other_server", "localhost", ["localhost", "127.0.0.1"], server, other, other_key)
leaf("expired", "localhost", ["localhost", "127.0.0.1"], server, ca, ca_key,
     not_before=now - 30 * day, not_after=now - day)
leaf("not_yet", "localhost", ["localhost", "127.0.0.1"], server, ca, ca_key,
     not_before=now + day, not_after=now + 30 * day)
leaf("self_signed", "localhost", ["localhost", "127.0.0.1"], server, None, None)
leaf("elsewhere", "elsewhere.example", ["elsewhere.example"], server, ca, ca_key)
with open(os.path.join(out, "garbage.pem"), "wb") as f:
    f.write(b"this is not a certificate\n" + bytes(range(256)))
