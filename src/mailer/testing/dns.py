"""A real DNS server on 127.0.0.1 for tests, answering from a dict of records over UDP
and TCP (a long answer, a DKIM key say, is cut short over UDP and asked again over TCP,
as a resolver does). Built on dnspython's message API.

    zone = {"news.example": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"], "MX": ["10 mx.news.example."]}}
    with dns_server(zone) as server:
        ...  # ask 127.0.0.1:server.port; change server.zone between questions

A name missing from the zone is NXDOMAIN; a name with no records of the type asked
gives an empty answer; a name in `server.silent` gets no reply at all (a time-out)."""

from __future__ import annotations

import socketserver
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT

Zone = dict[str, dict[str, list[str]]]  # name -> type -> records (TXT unquoted)


@dataclass
class DnsServer:
    zone: Zone = field(default_factory=dict)
    silent: set[str] = field(default_factory=set)
    port: int = 0
    asked: list[tuple[str, str]] = field(default_factory=list)  # (name, type), in order

    def answer(self, wire: bytes, limit: int | None) -> bytes | None:
        """The reply to a query, cut short (TC) past `limit` bytes; None: stay silent."""
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.asked.append((name, rdtype))
        if name in self.silent:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        records = self.zone.get(name)
        if records is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif records.get(rdtype):
            rrset = response.find_rrset(
                response.answer, question.name, dns.rdataclass.IN, question.rdtype, create=True
            )
            for text in records[rdtype]:
                rrset.add(_rdata(rdtype, text), ttl=300)
        try:
            return response.to_wire(max_size=limit or 65535)
        except dns.exception.TooBig:
            response.answer = []
            response.flags |= dns.flags.TC
            return response.to_wire()


def _rdata(rdtype: str, text: str) -> dns.rdata.Rdata:
    if rdtype == "TXT":  # one string per 255 bytes, as a long key is published
        data = text.encode()
        chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
        return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)
    return dns.rdata.from_text(
        dns.rdataclass.IN,
        dns.rdatatype.from_text(rdtype),
        text,
        origin=dns.name.root,
        relativize=False,
    )


class _Udp(socketserver.BaseRequestHandler):
    server: _UdpServer

    def handle(self) -> None:
        wire, sock = self.request
        query = dns.message.from_wire(wire)
        limit = max(query.payload, 512) if query.edns >= 0 else 512
        reply = self.server.dns.answer(wire, limit)
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _Tcp(socketserver.StreamRequestHandler):
    server: _TcpServer

    def handle(self) -> None:
        while len(head := self.rfile.read(2)) == 2:
            reply = self.server.dns.answer(self.rfile.read(struct.unpack("!H", head)[0]), None)
            if reply is None:
                return
            self.wfile.write(struct.pack("!H", len(reply)) + reply)


class _UdpServer(socketserver.ThreadingUDPServer):
    daemon_threads = True
    dns: DnsServer


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    dns: DnsServer


@contextmanager
def dns_server(zone: Zone | None = None) -> Iterator[DnsServer]:
    """A started DNS server on 127.0.0.1 (one port, UDP and TCP); stopped afterwards."""
    served = DnsServer(zone or {})
    udp, tcp = _bind_both()
    udp.dns = tcp.dns = served
    served.port = udp.server_address[1]
    for server in (udp, tcp):
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield served
    finally:
        for server in (udp, tcp):
            server.shutdown()
            server.server_close()


def _bind_both() -> tuple[_UdpServer, _TcpServer]:
    """A UDP and a TCP server on the same free port (tried again if TCP's is taken)."""
    for _ in range(20):
        udp = _UdpServer(("127.0.0.1", 0), _Udp)
        try:
            return udp, _TcpServer(("127.0.0.1", udp.server_address[1]), _Tcp)
        except OSError:
            udp.server_close()
    raise OSError("no free port for a DNS server on 127.0.0.1")


__all__ = ["DnsServer", "Zone", "dns_server"]
