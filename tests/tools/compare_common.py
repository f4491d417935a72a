"""What path-compare.sh and smuggle-compare.sh share: reading a case of the catalogues
(path-cases.txt, smuggle-cases.txt) into bytes, and waiting for the servers to listen.

    python3 compare_common.py wait PORT...   # until each 127.0.0.1:PORT accepts (5 s each)
"""
import socket
import sys
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


if __name__ == "__main__" and sys.argv[1:2] == ["wait"]:
    wait_for([int(p) for p in sys.argv[2:]])
