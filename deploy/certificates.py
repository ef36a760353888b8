"""A private certificate authority of one cluster, made with the `openssl` command.

`issue` makes a folder (0700) holding the authority's certificate (ca.pem)
and, for each name asked, a certificate and its key (<name>.pem and
<name>-key.pem, keys 0600), each signed by the authority. A member's is
good for both ends of a TLS connection (serverAuth and clientAuth) at the
IP addresses given, and every member's has the one common name MEMBER, which
members ask of each other. A client's is good only as a client's
(clientAuth, no address, its own name): whoever holds it can neither serve
as a member nor join the members' own connections. The authority's key is
made, used to sign them, and deleted: no further certificate can be issued,
so a cluster trusts exactly the certificates made with it, and none of
another cluster's.
"""

import secrets
import subprocess
import tempfile
from pathlib import Path

from deploy.processes import PRIVATE_UMASK, DeployError, require

DAYS = "825"  # longer than any run of the lab; shorter than browsers' own limit, out of habit
KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]  # fast to make, unlike RSA
MEMBER = "lab-etcd-member"  # every member certificate's common name, and no client's


def issue(folder, members, clients=()):
    """Make `folder` with ca.pem, and <name>.pem and <name>-key.pem for each name -> IP addresses in `members`
    (a member's) and each name in `clients` (a client's)."""
    folder = Path(folder)
    folder.mkdir(mode=0o700)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        authority_key = Path(scratch) / "ca-key.pem"
        _openssl("req", "-x509", *KEY, "-keyout", authority_key, "-out", folder / "ca.pem", "-days", DAYS,
                 "-subj", f"/CN=lab etcd {secrets.token_hex(4)}",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
        kinds = {**{name: (MEMBER, "serverAuth,clientAuth\nsubjectAltName="
                                   + ",".join(f"IP:{address}" for address in addresses))
                    for name, addresses in members.items()},
                 **{name: (name, "clientAuth") for name in clients}}
        for name, (common_name, usage) in kinds.items():
            request, extensions = Path(scratch) / f"{name}.csr", Path(scratch) / f"{name}.ext"
            extensions.write_text("basicConstraints=critical,CA:FALSE\n"
                                  "keyUsage=critical,digitalSignature,keyEncipherment\n"
                                  f"extendedKeyUsage={usage}\n")
            _openssl("req", "-new", *KEY, "-keyout", folder / f"{name}-key.pem", "-out", request,
                     "-subj", f"/CN={common_name}")
            _openssl("x509", "-req", "-in", request, "-CA", folder / "ca.pem", "-CAkey", authority_key,
                     "-set_serial", f"0x{secrets.token_hex(16)}", "-days", DAYS, "-extfile", extensions,
                     "-out", folder / f"{name}.pem")
    return folder


def _openssl(*argv):
    done = subprocess.run([require("openssl", "openssl"), *map(str, argv)], capture_output=True, text=True,
                          umask=PRIVATE_UMASK, check=False)
    if done.returncode:
        raise DeployError(f"openssl {argv[0]} failed: {done.stderr.strip()[-500:]}")
