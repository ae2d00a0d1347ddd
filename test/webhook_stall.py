"""webhook_stall.py: a client that starts a POST /mutate and never finishes
its body, over TLS, on HTTP/1.1 or HTTP/2 (frames written by hand: no h2
module on Debian's python3), and reports how long the server kept the
connection open.

    python3 webhook_stall.py PORT CAFILE {h1|h2} {silent|trickle} MAX_SECONDS

silent: headers (Content-Length 100) and 10 body bytes, then nothing.
trickle: then one more body byte every second.
Prints "closed SECONDS" when the server closed the connection (EOF, reset,
or an HTTP/2 GOAWAY/RST_STREAM), or "open SECONDS" after MAX_SECONDS.
"""
import select
import socket
import ssl
import struct
import sys
import time


def frame(ftype, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


def literal(name, value):
    # HPACK literal header field without indexing, new name, no Huffman.
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def main():
    port, cafile, proto, mode, limit = sys.argv[1:6]
    limit = float(limit)
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["h2"] if proto == "h2" else ["http/1.1"])
    raw = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
    sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    if proto == "h2":
        if sock.selected_alpn_protocol() != "h2":
            sys.exit("h2 not negotiated")
        block = b"".join([
            literal(b":method", b"POST"), literal(b":scheme", b"https"),
            literal(b":path", b"/mutate"), literal(b":authority", b"127.0.0.1"),
            literal(b"content-type", b"application/json"),
            literal(b"content-length", b"100")])
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") +
                     frame(1, 4, 1, block) + frame(0, 0, 1, b"{" * 10))
        more = lambda: frame(0, 0, 1, b"[")  # noqa: E731
    else:
        sock.sendall(b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n" +
                     b"{" * 10)
        more = lambda: b"["  # noqa: E731
    start = time.monotonic()
    next_byte = start + 1
    buf = b""
    sock.setblocking(False)
    while True:
        now = time.monotonic()
        if now - start >= limit:
            print("open %.1f" % (now - start))
            return
        if mode == "trickle" and now >= next_byte:
            try:
                sock.sendall(more())
            except OSError:
                print("closed %.1f" % (now - start))
                return
            next_byte += 1
        select.select([sock], [], [], 0.2)
        try:
            data = sock.recv(65536)
        except (ssl.SSLWantReadError, BlockingIOError):
            continue
        except OSError:
            data = b""
        if not data:
            print("closed %.1f" % (time.monotonic() - start))
            return
        buf += data
        if proto == "h2":
            # GOAWAY (7) or RST_STREAM (3) for our stream ends it too.
            while len(buf) >= 9:
                n = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + n:
                    break
                if buf[3] in (3, 7):
                    print("closed %.1f" % (time.monotonic() - start))
                    return
                if buf[3] == 4 and not buf[4] & 1:
                    sock.sendall(frame(4, 1, 0, b""))  # SETTINGS ack
                buf = buf[9 + n:]


if __name__ == "__main__":
    main()
