#!/usr/bin/env bash
# Sends every request of tests/tools/path-cases.txt, byte for byte and without credentials, to
# Portico, nginx and HAProxy, each guarding /admin (Portico: a route with key_auth; nginx: a
# `location /admin` that answers 401; HAProxy: a 401 on `path_beg /admin`) in front of the same
# tiny origin, and prints a Markdown table of what each did: the status the client got and the
# request target the origin received (`—`: nothing reached it). `⚠` marks a 2xx whose target a
# backend that reads paths the usual way would read as under /admin (`;parameters` dropped as
# servlet containers do, escapes decoded, `\` read as `/` as Windows servers do, dot segments
# and repeated slashes resolved): the guard was walked around.
#
#   cargo build --bin portico && tests/tools/path-compare.sh > /tmp/table.md
#
# Needs nginx, haproxy and python3 on PATH (the Debian packages are enough; nothing runs as a
# service or needs root). PORTICO_BIN overrides target/debug/portico.
set -euo pipefail
work_name=path-compare
source "$(dirname "$0")/compare-common.sh"

# The origin: logs each request's target exactly as received, answers 200 and closes.
cat > "$work/origin.py" <<'PY'
from compare_common import read_head, record, serve_forever
def serve(conn):
    try:
        buf = read_head(conn, b"")
        if buf is None:
            return
        parts = buf.split(b"\r\n", 1)[0].split(b" ")
        target = parts[1] if len(parts) > 1 else b"?"
        record(target.replace(b"\n", b"\\n"))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
    except Exception:
        pass
    finally:
        conn.close()
serve_forever(serve)
PY
start_origin

start_nginx "  server {
    listen 127.0.0.1:$nginx_port;
    location /admin { return 401; }
    location / { proxy_pass http://127.0.0.1:$origin_port; proxy_set_header Host \$host; }
  }"

start_haproxy <<EOF
frontend fe
  bind 127.0.0.1:$haproxy_port
  http-request deny deny_status 401 if { path_beg /admin }
  default_backend be
backend be
  server origin 127.0.0.1:$origin_port
EOF

start_portico_and_wait warn <<EOF
upstreams:
  origin: { backends: [ { addr: "127.0.0.1:$origin_port" } ], retries: 0 }
routes:
  - { name: admin, upstream: origin, match: { path: { prefix: /admin } }, plugins: [ { key_auth: { keys: { ci: secret } } } ] }
  - { name: public, upstream: origin, match: { path: { prefix: / } } }
EOF

python3 - "$root/tests/tools/path-cases.txt" "$work" "$portico_port" "$nginx_port" "$haproxy_port" <<'PY'
import socket, sys, time, re, os
from compare_common import send_and_read, unescape
from urllib.parse import unquote_to_bytes
cases_file, work = sys.argv[1], sys.argv[2]
proxies = [("Portico", int(sys.argv[3])), ("nginx", int(sys.argv[4])), ("HAProxy", int(sys.argv[5]))]
log = os.path.join(work, "origin.log")

def servlet_reads_admin(target):
    # Drop ;parameters per segment (servlet containers), decode, read \ as / (Windows
    # servers), resolve dot segments and empty ones.
    path = target.split(b"?")[0]
    m = re.match(rb"^https?://[^/]*", path, re.I)
    if m:
        path = path[m.end():] or b"/"
    segs = [unquote_to_bytes(s.split(b";")[0]) for s in path.split(b"/")[1:]]
    segs = b"/".join(segs).replace(b"\\", b"/").split(b"/")
    kept = []
    for s in segs:
        if s == b"..":
            if kept: kept.pop()
        elif s not in (b".", b""):
            kept.append(s)
    return kept[:1] == [b"admin"]

def exchange(port, payload):
    data, _ = send_and_read(port, payload)
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", data)
    return int(m.group(1)) if m else None

def show(target):
    t = target.decode("latin1")
    return "`" + t.replace("|", "\\|").replace("`", "'") + "`"

print("| case | request | " + " | ".join(n for n, _ in proxies) + " |")
print("|---|---|" + "---|" * len(proxies))
for line in open(cases_file, encoding="utf-8"):
    if line.startswith("#") or not line.strip():
        continue
    name, what, raw = line.rstrip("\n").split("\t", 2)
    cells = []
    for proxy, port in proxies:
        before = os.path.getsize(log)
        status = exchange(port, unescape(raw))
        time.sleep(0.2)
        with open(log, "rb") as f:
            f.seek(before)
            seen = [l.rstrip(b"\n") for l in f if l.strip()]
        cell = str(status) if status else "closed"
        cell += " · " + (", ".join(show(t) for t in seen) if seen else "—")
        if status and 200 <= status < 300 and any(servlet_reads_admin(t) for t in seen):
            cell += " ⚠"
        cells.append(cell)
    print("| `%s` | %s | %s |" % (name, what.replace("|", "\\|"), " | ".join(cells)))
print()
print("Each cell: the status the client got, then the target the origin received (`—`: none). "
      "⚠: a 2xx whose target a backend reading paths the usual way (`;parameters` dropped, escapes "
      "decoded, `\\` as `/`, dot segments and repeated slashes resolved) reads as under /admin: "
      "the guard on /admin was walked around.")
PY
echo
echo "nginx $("$nginx" -v 2>&1 | sed 's/.*nginx\///'), $("$haproxy" -v | head -1 | awk '{print $1, $2, $3}'), Portico $("$portico" -V | awk '{print $2}') on Pingora 0.9.1; $(date -u +%Y-%m-%d)."
