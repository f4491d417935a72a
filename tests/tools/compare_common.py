"""What path-compare.sh and smuggle-compare.sh share in Python: reading a case of the
catalogues (path-cases.txt, smuggle-cases.txt) into bytes, the origin's accept loop and
head reading, one client exchange, and waiting for the servers to listen.

    python3 compare_common.py wait PORT...   # until each 127.0.0.1:PORT accepts (5 s each)
"""
import socket
import sys
import threading
import time


def unescape(s):
    """A case's bytes: `\\r \\n \\t \\0 \\\\` and `\\xHH` escapes, the rest as UTF-8."""
    out, i = bytearray(), 0
    esc = {"r": 13, "n": 10, "t": 9, "0": 0, "\\": 92}
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            if s[i + 1] == "x":
                out.append(int(s[i + 2:i + 4], 16)); i += 4
            else:
                out.append(esc[s[i + 1]]); i += 2
        else:
            out += s[i].encode(); i += 1
    return bytes(out)


def wait_for(ports, tries=50):
    """Returns once each port accepts a connection, or after `tries` tenths of a second."""
    for port in ports:
        for _ in range(tries):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)


_record_lock = threading.Lock()


def record(line):
    """The origin's log (the file named by its second argument): one line per request."""
    with _record_lock, open(sys.argv[2], "ab") as f:
        f.write(line + b"\n")


def serve_forever(serve):
    """The origin's accept loop on 127.0.0.1:PORT (its first argument), each connection to
    `serve(conn)` in a thread."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def read_head(conn, buf):
    """Reads from `conn` until `buf` holds a whole head (up to CRLF CRLF); the bytes, or
    None when the connection ends first."""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return None
        buf += data
    return buf


def send_and_read(port, payload, seconds=2):
    """Sends `payload` on a new connection to 127.0.0.1:`port` and reads for `seconds` or
    until the proxy closes: (the bytes read, whether it closed)."""
    s = socket.create_connection(("127.0.0.1", port), 2)
    try:
        s.sendall(payload)
    except OSError:
        pass
    data, closed, deadline = b"", False, time.time() + seconds
    s.settimeout(0.2)
    while time.time() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
    s.close()
    return data, closed


if __name__ == "__main__" and sys.argv[1:2] == ["wait"]:
    wait_for([int(p) for p in sys.argv[2:]])
