"""Opens N TLS connections to HOST:PORT and holds them open (idle) until stdin closes.

mode "handshake": TLS handshake only; mode "request": the handshake and one HTTP/1.1
keep-alive request (GET PATH), so the connection idles as a served keep-alive client would.
Writes "READY <open>" to the file READY once every connection is set up. No session is
resumed: each connection is a fresh context-less handshake (Python never reuses a session
unless given one).
"""
import socket
import ssl
import sys

host, port, n, mode, path, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()

def read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("closed before the response head")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("closed mid-body")
        body += chunk
    if status != 200:
        raise RuntimeError(f"status {status}")

conns = []
failed = 0
for i in range(n):
    try:
        raw = socket.create_connection((host, port), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        if mode == "request":
            s.sendall(request)
            read_response(s)
        conns.append(s)
    except Exception as e:  # counted and reported; the caller checks the number open
        failed += 1
        if failed <= 3:
            print(f"idle.py: connection {i}: {e}", file=sys.stderr)
with open(ready, "w") as f:
    f.write(f"READY {len(conns)} {failed}\n")
sys.stdin.read()
for s in conns:
    s.close()
