"""What path-compare.sh and smuggle-compare.sh share in Python: reading a case of the
catalogues (path-cases.txt, smuggle-cases.txt) into bytes, the origin's accept loop, and
waiting for the servers to listen.

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


def serve_forever(port, serve):
    """Accepts on 127.0.0.1:`port` forever, each connection to `serve(conn)` in a thread."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


if __name__ == "__main__" and sys.argv[1:2] == ["wait"]:
    wait_for([int(p) for p in sys.argv[2:]])
