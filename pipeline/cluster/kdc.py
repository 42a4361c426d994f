"""Kerberos for a SECURE=1 native cluster: the KDC, the principals and keytabs, the krb5.conf
that daemons and clients read, and the ticket the cluster tool itself uses.

Why Hadoop's MiniKdc: it is one more Java process from the same checksummed Maven jars (Apache
Kerby underneath), needs neither root nor system files (/etc/krb5.conf, /var/lib/krb5kdc), and
listens on a port of ours, so an isolated test cluster gets its own realm server. MIT's client
tools (kinit, klist, ktutil; Debian's krb5-user) do the client side, as on a real cluster.

MiniKdc keeps its database in memory: every start makes new keys. So a KDC start rewrites the
keytabs and the cluster's ticket, and `up` restarts any daemon still running with old keys.

Layout under <state>/krb5 (private to the cluster's OS user, 700):
    kdc/             the KDC's work dir; kdc.properties, the keytab it writes
    krb5.conf        realm and KDC address: KRB5_CONFIG for MIT clients,
                     -Djava.security.krb5.conf for every JVM
    service.keytab   nn, dn, rm, nm, HTTP (SPNEGO) and spark (History Server) at CLUSTER_HOST
    <user>.keytab    the OS user's principal: `kinit -kt`, or spark-submit --keytab
    ccache           the ticket `up`, `status` and `env` use (KRB5CCNAME)
The mode of the cluster ("kerberos" or "simple") is recorded in <state>/run/security by `up`,
so that `down`, `status`, `env` and the rendered configuration follow it.
"""
from __future__ import annotations

import getpass
import logging
import os
import shutil
import socket
import subprocess
from pathlib import Path

from pipeline import config
from pipeline.cluster.errors import ClusterError

log = logging.getLogger(__name__)

MAIN_CLASS = "org.apache.hadoop.minikdc.MiniKdc"
#: One principal per daemon role, <role>/CLUSTER_HOST@REALM; HTTP is SPNEGO on the web UIs and
#: WebHDFS, spark the History Server's login.
SERVICES = ("nn", "dn", "rm", "nm", "HTTP", "spark")
KERBEROS, SIMPLE = "kerberos", "simple"
#: What an install of the client side takes (the Makefile's SECURE=1 step runs it).
INSTALL_HINT = ("apt-get install -y krb5-user libkrb5-dev && pip install -e '.[kerberos]' "
                "(`make cluster-up SECURE=1` does both)")


def krb5_dir() -> Path:
    return config.STATE_DIR / "krb5"


def work_dir() -> Path:
    return krb5_dir() / "kdc"


def krb5_conf() -> Path:
    return krb5_dir() / "krb5.conf"


def service_keytab() -> Path:
    return krb5_dir() / "service.keytab"


def user() -> str:
    return getpass.getuser()


def user_keytab() -> Path:
    return krb5_dir() / f"{user()}.keytab"


def ccache() -> Path:
    return krb5_dir() / "ccache"


def _all_keytab() -> Path:
    """What MiniKdc writes at start: every principal, split by split_keytabs()."""
    return work_dir() / "all.keytab"


def principal(service: str) -> str:
    return f"{service}/{config.CLUSTER_HOST}@{config.KERBEROS_REALM}"


def user_principal() -> str:
    return f"{user()}@{config.KERBEROS_REALM}"


# --- the recorded mode ----------------------------------------------------------------------

def _mode_file() -> Path:
    return config.STATE_DIR / "run" / "security"


def is_secure() -> bool:
    """The cluster at config.STATE_DIR was last brought up with Kerberos."""
    try:
        return _mode_file().read_text().strip() == KERBEROS
    except OSError:
        return False


def record(secure: bool) -> None:
    _mode_file().parent.mkdir(parents=True, exist_ok=True)
    _mode_file().write_text((KERBEROS if secure else SIMPLE) + "\n")


def mode_name(secure: bool) -> str:
    return "secure (Kerberos)" if secure else "plain (simple authentication)"


# --- client side ----------------------------------------------------------------------------

def check_tools() -> None:
    """MIT's client tools are installed (they are not part of the base system)."""
    missing = [tool for tool in ("kinit", "klist", "ktutil") if shutil.which(tool) is None]
    if missing:
        raise ClusterError(f"a secure cluster needs MIT Kerberos' {', '.join(missing)}: "
                           f"{INSTALL_HINT}")


def client_env() -> dict[str, str]:
    """What an MIT Kerberos client (kinit, requests-kerberos) needs to use this cluster's realm
    and the cluster's ticket cache. Java ignores both: see java_opts()."""
    return {"KRB5_CONFIG": str(krb5_conf()), "KRB5CCNAME": f"FILE:{ccache()}"}


def java_opts() -> list[str]:
    """The JVM reads its realm from this property only (not KRB5_CONFIG); KRB5CCNAME it does
    read, for the ticket cache."""
    return [f"-Djava.security.krb5.conf={krb5_conf()}"]


def _run(cmd: list[str], env: dict[str, str] | None = None,
         stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True,
                          env={**os.environ, **client_env(), **(env or {})})


def has_ticket() -> bool:
    """The cluster's ticket cache holds a TGT that has not expired (`klist -s`)."""
    return _run(["klist", "-s"]).returncode == 0


def kinit() -> None:
    """A fresh TGT for the OS user's principal, from its keytab, in the cluster's cache."""
    done = _run(["kinit", "-kt", str(user_keytab()), user_principal()])
    if done.returncode != 0:
        raise ClusterError(f"kinit {user_principal()} with {user_keytab()} failed: "
                           f"{done.stderr.strip()} (is the KDC running? `make cluster-status`)")


def use_cluster_ticket() -> None:
    """Point this process's MIT Kerberos at the cluster's realm and cache, with a valid TGT:
    what `up`, `status` and `env` need to ask the SPNEGO-protected web endpoints."""
    check_tools()
    os.environ.update(client_env())
    if not has_ticket():
        kinit()


# --- the KDC --------------------------------------------------------------------------------

def arguments() -> list[str]:
    """MiniKdc's standalone main: <workdir> <properties> <keytab> <principal>..."""
    return [str(work_dir()), str(work_dir() / "kdc.properties"), str(_all_keytab()),
            *(f"{service}/{config.CLUSTER_HOST}" for service in SERVICES), user()]


def prepare_start() -> None:
    """Before the KDC starts: its properties, and no keytab or ticket from an earlier KDC."""
    check_tools()
    work_dir().mkdir(parents=True, exist_ok=True)
    krb5_dir().chmod(0o700)
    org, _, domain = config.KERBEROS_REALM.partition(".")
    (work_dir() / "kdc.properties").write_text("\n".join([
        f"org.name={org}", f"org.domain={domain}",
        f"kdc.bind.address={config.CLUSTER_BIND_HOST}",
        f"kdc.port={config.CLUSTER_PORTS['kdc']}", "transport=TCP",
        # A day, renewable for a week: Hadoop's and MIT's usual defaults.
        "max.ticket.lifetime=86400000", "max.renewable.lifetime=604800000", ""]))
    for stale in (_all_keytab(), service_keytab(), user_keytab(), ccache()):
        stale.unlink(missing_ok=True)
    write_krb5_conf()


#: What MiniKdc's main prints once the keytab holds every principal: the keytab file exists
#: (and grows) while it adds them one by one.
READY_LINE = "Standalone MiniKdc Running"


def ready(out: Path, marker: str) -> bool:
    """The KDC started after ``marker`` in its console log ``out`` has written its whole
    keytab, and answers on its port."""
    try:
        console = out.read_text(errors="replace").rsplit(marker, 1)[-1]
    except OSError:
        return False
    if READY_LINE not in console or not _all_keytab().exists():
        return False
    try:
        socket.create_connection((config.CLUSTER_BIND_HOST, config.CLUSTER_PORTS["kdc"]),
                                 timeout=1).close()
    except OSError:
        return False
    return True


def write_krb5_conf() -> None:
    """The realm, its KDC over TCP, and no DNS: principals name `localhost` as it is."""
    realm, host = config.KERBEROS_REALM, config.CLUSTER_HOST
    text = f"""# Written by pipeline.cluster (kdc.py) for the cluster at {config.STATE_DIR}.
[libdefaults]
    default_realm = {realm}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    udp_preference_limit = 1
    forwardable = true
    ticket_lifetime = 24h
    renew_lifetime = 7d

[realms]
    {realm} = {{
        kdc = {config.CLUSTER_BIND_HOST}:{config.CLUSTER_PORTS['kdc']}
    }}

[domain_realm]
    {host} = {realm}
"""
    krb5_dir().mkdir(parents=True, exist_ok=True)
    krb5_conf().write_text(text)


def _split_keytab(src: Path, dst: Path, keep: set[str]) -> int:
    """dst with src's entries for the principals in keep (ktutil: read, delete the rest by
    slot, highest first so the slots do not shift, write). Returns the entries kept."""
    listing = _run(["klist", "-k", str(src)])
    if listing.returncode != 0:
        raise ClusterError(f"cannot read the KDC's keytab {src}: {listing.stderr.strip()}")
    names = [line.split()[1] for line in listing.stdout.splitlines()[3:] if line.strip()]
    if keep - set(names):
        raise ClusterError(f"the KDC's keytab {src} lacks {sorted(keep - set(names))}")
    drop = [slot for slot, name in enumerate(names, 1) if name not in keep]
    dst.unlink(missing_ok=True)
    script = [f"rkt {src}", *(f"delent {slot}" for slot in reversed(drop)), f"wkt {dst}", "q"]
    done = _run(["ktutil"], stdin="\n".join(script) + "\n")
    if done.returncode != 0 or not dst.exists():
        raise ClusterError(f"ktutil could not write {dst}: {done.stderr.strip()}")
    dst.chmod(0o600)
    return len(names) - len(drop)


def finish_start() -> None:
    """After the KDC is ready: one keytab for the daemons, one for the user, and a ticket."""
    services = {principal(service) for service in SERVICES}
    kept = _split_keytab(_all_keytab(), service_keytab(), services)
    _split_keytab(_all_keytab(), user_keytab(), {user_principal()})
    _all_keytab().unlink()
    kinit()
    log.info("KDC for realm %s on %s:%d: %d service keys in %s, %s in %s, ticket in %s",
             config.KERBEROS_REALM, config.CLUSTER_BIND_HOST, config.CLUSTER_PORTS["kdc"], kept,
             service_keytab(), user_principal(), user_keytab(), ccache())
