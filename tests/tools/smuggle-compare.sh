#!/usr/bin/env bash
# Sends every hostile request of tests/tools/smuggle-cases.txt, byte for byte, to Portico,
# nginx and HAProxy, each a reverse proxy in front of the same tiny origin, and prints a
# Markdown table of what each did: the status it answered (or `closed` when it hung up
# without one) and how many requests reached the origin. `DESYNC` marks a case where the
# origin saw more requests than the client got answers: the proxy and the origin disagreed
# about where a request ended, which is what request smuggling is. (Two answers and two
# origin requests is pipelining: the proxy itself read both requests.)
#
#   cargo build --bin portico && tests/tools/smuggle-compare.sh > /tmp/table.md
#
# Needs nginx, haproxy and python3 on PATH (the Debian packages are enough; nothing runs as a
# service or needs root). PORTICO_BIN overrides target/debug/portico.
set -euo pipefail
work_name=smuggle-compare
source "$(dirname "$0")/compare-common.sh"

# The origin: parses each request strictly (CRLF heads; Transfer-Encoding chunked, else
# Content-Length), logs "METHOD PATH" per request, answers 200, keeps the connection open.
cat > "$work/origin.py" <<'PY'
from compare_common import read_head, record, serve_forever
def serve(conn):
    buf = b""
    try:
        while True:
            buf = read_head(conn, buf)
            if buf is None:
                return
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            headers = {}
            for l in lines[1:]:
                k, _, v = l.partition(b":")
                headers.setdefault(k.strip().lower(), []).append(v.strip())
            record(parts[0] + b" " + (parts[1] if len(parts) > 1 else b"?"))
            te = b",".join(headers.get(b"transfer-encoding", [])).lower()
            if te.split(b",")[-1].strip() == b"chunked":
                while True:
                    while b"\r\n" not in buf:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buf += data
                    size_line, buf = buf.split(b"\r\n", 1)
                    size = int(size_line.split(b";")[0], 16)
                    while len(buf) < size + 2:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buf += data
                    buf = buf[size + 2:]
                    if size == 0:
                        break
            elif b"content-length" in headers:
                n = int(headers[b"content-length"][0])
                while len(buf) < n:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[n:]
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
    except Exception:
        pass
    finally:
        conn.close()
serve_forever(serve)
PY
start_origin

start_nginx "  upstream origin { server 127.0.0.1:$origin_port; keepalive 8; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host \$host; }
  }"

start_haproxy <<EOF
  option http-keep-alive
frontend fe
  bind 127.0.0.1:$haproxy_port
  default_backend be
backend be
  server origin 127.0.0.1:$origin_port
EOF

start_portico_and_wait info <<EOF
upstreams:
  origin: { backends: [ { addr: "127.0.0.1:$origin_port" } ] }
routes:
  - { name: all, upstream: origin }
EOF

python3 - "$root/tests/tools/smuggle-cases.txt" "$work" "$portico_port" "$nginx_port" "$haproxy_port" <<'PY'
import socket, sys, time, re, os
from compare_common import send_and_read, unescape
cases_file, work = sys.argv[1], sys.argv[2]
proxies = [("Portico", int(sys.argv[3])), ("nginx", int(sys.argv[4])), ("HAProxy", int(sys.argv[5]))]
log = os.path.join(work, "origin.log")
portico_log = os.path.join(work, "portico.log")

def size(path):
    return os.path.getsize(path) if os.path.exists(path) else 0

def exchange(port, payload):
    data, closed = send_and_read(port, payload)
    statuses = re.findall(rb"HTTP/1\.[01] (\d{3}) ", data)
    return [int(x) for x in statuses], closed

print("| case | what | " + " | ".join(n for n, _ in proxies) + " |")
print("|---|---|" + "---|" * len(proxies))
for line in open(cases_file):
    if line.startswith("#") or not line.strip():
        continue
    name, what, raw = line.rstrip("\n").split("\t", 2)
    cells = []
    for proxy, port in proxies:
        before, plog = size(log), size(portico_log)
        statuses, closed = exchange(port, unescape(raw))
        time.sleep(0.3)
        with open(log, errors="replace") as f:
            f.seek(before)
            seen = [l.strip() for l in f if l.strip()]
        cell = ", ".join(map(str, statuses)) if statuses else ("closed" if closed else "no answer")
        if statuses and closed is False:
            cell += " (open)"
        cell += " · origin %d" % len(seen)
        if len(seen) > len(statuses):
            cell += " **DESYNC**"
        if proxy == "Portico":
            with open(portico_log, errors="replace") as f:
                f.seek(plog)
                if "Fail to early filter request" in f.read():
                    cell += " ¹"
        cells.append(cell)
    print("| `%s` | %s | %s |" % (name, what.replace("|", "\\|"), " | ".join(cells)))
print()
print("`origin N`: requests that reached the origin; `(open)`: the proxy kept the connection "
      "open after answering. ¹ refused by Portico's own framing check (gateway/src/framing.rs); "
      "Portico's other refusals come from Pingora's parser.")
PY
echo
echo "nginx $("$nginx" -v 2>&1 | sed 's/.*nginx\///'), $("$haproxy" -v | head -1 | awk '{print $1, $2, $3}'), Portico $("$portico" -V | awk '{print $2}') on Pingora 0.9.1; $(date -u +%Y-%m-%d)."
