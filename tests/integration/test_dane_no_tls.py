"""Issue 13 item 6: DANE applies (MX and TLSA answers secure) to a host that gives no TLS
session; the verdict is "no-tls" (a DANE sender would not deliver, RFC 7672 §2.2), not
"undetermined".  Real SMTP servers on loopback (the test world's fleet), probed by the
real prober; the verdict is the pipeline's ``dane_for`` on the probes' results.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from probes.dane.tlsa import DaneStatus
from probes.dns.records import Answer, Dnssec, MxHost, Outcome
from probes.plan import dane_for
from probes.smtp.probe import SmtpProbe, SmtpProber, SmtpSettings
from probes.smtp.session import SmtpTimeouts
from probes.tls.truststore import load_trust_store
from probes.tls.verify import Verifier
from probes.transport import no_tls_reason
from testbed.pki import TestPki
from testbed.smtpfleet import HostSpec, SmtpFleet, server_context

PORT = 2525
TIMEOUTS = SmtpTimeouts(connect=2.0, banner=1.0, command=1.0, handshake=2.0, quit=0.5)
#: behaviour -> the address of its host (127.113.x: no other test uses it).
BEHAVIOURS = {
    "good": "127.113.0.1",
    "no-starttls": "127.113.0.2",
    "starttls-454": "127.113.0.3",
    "handshake-fail": "127.113.0.4",
    "banner-554": "127.113.0.5",
    "refused": "127.113.0.6",
}
NO_TLS = [b for b in BEHAVIOURS if b != "good"]


def _answer(name: str, rrtype: str, data: tuple[str, ...], dnssec: Dnssec = Dnssec.SECURE) -> Answer:
    return Answer(
        name=name,
        rrtype=rrtype,
        outcome=Outcome.OK,
        dnssec=dnssec,
        ad=dnssec is Dnssec.SECURE,
        ttl=300,
        cname_chain=(),
        data=data,
        rcode="NOERROR",
        ede=(),
        detail="",
    )


def _mx_host(host: str, address: str) -> MxHost:
    tlsa = ("3 1 1 " + "ab" * 32,)
    nodata = Answer(host, "AAAA", Outcome.NODATA, Dnssec.SECURE, True, 300, (), (), "NOERROR", (), "")
    return MxHost(
        10, host, _answer(host, "A", (address,)), nodata, _answer(f"_25._tcp.{host}", "TLSA", tlsa), None
    )


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SmtpProbe]:
    pki = TestPki(label="dane-no-tls")
    root = Path(tmp_path_factory.mktemp("pki")) / "root.pem"
    root.write_bytes(pki.root_pem())
    settings = SmtpSettings(
        ehlo_name="scanner.mxscan.test",
        verifier=Verifier(load_trust_store("none", [str(root)])),
        port=PORT,
        timeouts=TIMEOUTS,
    )
    specs = {}
    for behaviour, address in BEHAVIOURS.items():
        host = f"mx.{behaviour}.dane.test"
        issued = pki.issue([host], kind="valid")
        tls = server_context(issued.chain_pem, issued.key_pem)
        specs[behaviour] = HostSpec(name=host, address=address, behaviour=behaviour, tls=tls)

    async def main() -> dict[str, SmtpProbe]:
        async with SmtpFleet(specs.values(), PORT):
            prober = SmtpProber(settings)
            found = await asyncio.gather(*(prober.probe(s.name, s.address) for s in specs.values()))
            return dict(zip(specs, found, strict=True))

    return asyncio.run(main())


def _dane(behaviour: str, probe: SmtpProbe, mx_dnssec: Dnssec = Dnssec.SECURE) -> tuple[DaneStatus, str]:
    host = _mx_host(probe.result.host, BEHAVIOURS[behaviour])
    mx = _answer("d.test", "MX", (f"10 {host.host}",), mx_dnssec)
    chain = list(probe.chain_der) or None
    no_tls = None if chain else no_tls_reason([probe.result])
    result = dane_for(host, mx, chain, dt.datetime.now(dt.UTC), no_tls=no_tls)
    return result.status, result.detail


@pytest.mark.parametrize("behaviour", NO_TLS)
def test_dane_host_without_tls_is_no_tls_not_undetermined(
    behaviour: str, probes: dict[str, SmtpProbe]
) -> None:
    status, detail = _dane(behaviour, probes[behaviour])
    assert status is DaneStatus.NO_TLS, detail
    assert "would not deliver" in detail
    if behaviour == "no-starttls":
        assert "STARTTLS not offered" in detail
    else:
        assert probes[behaviour].result.status.value in detail


def test_host_with_tls_is_matched_not_no_tls(probes: dict[str, SmtpProbe]) -> None:
    """The control: the same records against a host that completes TLS are matched (a
    mismatch here: the record binds no real key)."""
    assert no_tls_reason([probes["good"].result]) is None
    assert _dane("good", probes["good"])[0] is DaneStatus.MISMATCH


def test_no_tls_needs_a_secure_mx_answer(probes: dict[str, SmtpProbe]) -> None:
    assert _dane("no-starttls", probes["no-starttls"], Dnssec.INSECURE)[0] is DaneStatus.INSECURE


def test_host_not_probed_stays_undetermined() -> None:
    host = _mx_host("mx.unprobed.dane.test", "127.113.0.9")
    mx = _answer("d.test", "MX", (f"10 {host.host}",))
    assert no_tls_reason([]) is None
    assert dane_for(host, mx, None, dt.datetime.now(dt.UTC)).status is DaneStatus.UNDETERMINED
