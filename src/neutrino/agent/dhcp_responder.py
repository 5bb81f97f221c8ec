"""The agent's DHCPv4 server: one raw socket on one interface, one thread, no state.

`PacketResponder` is the socket and the thread, for one ethertype; `DhcpResponder` answers
DHCPv4 with it (and `neutrino.agent.ra.RaResponder` router solicitations).

The OVS pipeline steers each VIF's DHCP request to the interface this serves, after
overwriting the request's UDP source port with the VIF's OpenFlow port number; it takes the
reply's UDP destination port to pick the output port and rewrites it back to 68.  So the UDP
source port of a request is the key of the port it came from: the responder asks
`lookup(key)` for that port's lease, answers only if the lease's MAC is the request's chaddr,
and sends the reply to UDP port `key`.  (Without OVS, e.g. on a veth, a client's source port
is 68, so key 68 and reply port 68 just work.)

The socket is AF_PACKET/SOCK_RAW bound to the interface for ETH_P_IP only: a socket for one
protocol gets received frames only, never the frames it (or anyone) transmits.  It joins
PACKET_MR_PROMISC so that unicast renewals addressed to the server's MAC (which is not the
interface's) are received on NICs that filter by destination MAC.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
from collections.abc import Callable

from neutrino.agent.dhcp import (
    DECLINE,
    INFORM,
    MESSAGE_NAMES,
    NAK,
    RELEASE,
    Lease,
    build_reply,
    parse_request,
    reply_type,
)

log = logging.getLogger("neutrino.agent.dhcp")

ETH_P_IP = 0x0800
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_OUTGOING = 4  # the pkttype of a frame this host sent
RECEIVE_SIZE = 65535
ERROR_PAUSE = 0.5  # seconds to wait after a failed receive (e.g. the interface went down)


def mac_bytes(mac: str) -> bytes:
    """`fa:16:3e:00:00:01` -> its 6 bytes."""
    return bytes.fromhex(mac.replace(":", ""))


def mac_text(raw: bytes) -> str:
    """6 bytes -> `fa:16:3e:00:00:01`."""
    return raw.hex(":")


class PacketResponder:
    """Answers frames of one ethertype received on `ifname` (`handle_frame`, in subclasses).

    `start()` opens the socket in the calling thread (so in its network namespace) and starts
    a daemon thread; `stop()` closes it and joins the thread (idempotent; `start()` may follow).
    `served` counts replies sent, `ignored` requests not answered, `errors` failures;
    `last_error` describes the latest failure.
    """

    ethertype = ETH_P_IP
    kind = "DHCP"

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self.served = 0
        self.ignored = 0
        self.errors = 0
        self.last_error: str | None = None
        self._sock: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                raise RuntimeError(f"{self.kind} responder on {self.ifname} already started")
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(self.ethertype))
            try:
                sock.bind((self.ifname, self.ethertype))
                ifindex = socket.if_nametoindex(self.ifname)
                mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            except BaseException:
                sock.close()
                raise
            self._sock = sock
            self._stopping.clear()
            self._wake_r, self._wake_w = socket.socketpair()
            self._thread = threading.Thread(target=self._run, name=f"{self.kind}-{self.ifname}",
                                            daemon=True)
            self._thread.start()
        log.info("%s responder listening on %s", self.kind, self.ifname)

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._stopping.set()
            assert self._wake_w is not None
            self._wake_w.send(b"x")
            thread.join()
            for sock in (self._sock, self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()
            self._sock = self._wake_r = self._wake_w = None
        log.info("%s responder on %s stopped (%d served)", self.kind, self.ifname, self.served)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    # --- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        assert self._sock is not None and self._wake_r is not None
        while not self._stopping.is_set():
            readable, _, _ = select.select([self._sock, self._wake_r], [], [])
            if self._wake_r in readable:
                break
            try:
                frame, address = self._sock.recvfrom(RECEIVE_SIZE)
            except OSError as error:
                self._failed(f"receive on {self.ifname}: {error}")
                self._stopping.wait(ERROR_PAUSE)
                continue
            if address[2] == PACKET_OUTGOING:
                continue
            try:
                reply = self.handle_frame(frame)
                if reply is not None:
                    self._sock.send(reply)
                    self.served += 1
            except Exception as error:
                log.exception("%s responder on %s: a request failed", self.kind, self.ifname)
                self._failed(f"{type(error).__name__}: {error}")

    def _failed(self, message: str) -> None:
        self.errors += 1
        self.last_error = message

    def handle_frame(self, frame: bytes) -> bytes | None:
        """The reply to one received frame, or None."""
        raise NotImplementedError


class DhcpResponder(PacketResponder):
    """Answers DHCP requests on `ifname` from `lookup(key) -> Lease | None`."""

    def __init__(self, ifname: str, lookup: Callable[[int], Lease | None]) -> None:
        super().__init__(ifname)
        self.lookup = lookup

    def handle_frame(self, frame: bytes) -> bytes | None:
        """The reply to one received frame, or None; logs what it decides.  Exceptions from
        `lookup` propagate (the receive loop logs them and carries on)."""
        request = parse_request(frame)
        if request is None:
            return None  # not DHCP: not worth a log line (the socket sees every IPv4 frame)
        key = request.udp_src_port
        name = MESSAGE_NAMES[request.message_type]
        lease = self.lookup(key)
        if lease is None:
            self.ignored += 1
            log.info("%s from %s (key %d): no lease for this port, ignored", name, request.chaddr, key)
            return None
        if lease.mac != request.chaddr:
            self.ignored += 1
            log.info("%s from %s (key %d): the port's MAC is %s, ignored", name, request.chaddr, key,
                     lease.mac)
            return None
        answer = reply_type(request, lease)
        if answer is None:
            self.ignored += 1
            if request.message_type == DECLINE:
                log.warning("DHCPDECLINE from %s (key %d): %s is in use by another host",
                            request.chaddr, key, request.requested_ip or lease.ip)
            elif request.message_type == RELEASE:
                log.info("DHCPRELEASE from %s (key %d)", request.chaddr, key)
            else:
                log.debug("%s from %s (key %d) names server %s, ignored", name, request.chaddr, key,
                          request.server_id)
            return None
        reply = build_reply(request, lease, udp_dst_port=key)
        if answer == NAK:
            log.info("DHCPNAK to %s (key %d): asked for %s, its address is %s", request.chaddr, key,
                     request.requested_ip or request.ciaddr, lease.ip)
        else:
            log.info("%s %s to %s (key %d)", MESSAGE_NAMES[answer],
                     lease.ip if request.message_type != INFORM else request.ciaddr, request.chaddr, key)
        return reply
