#!/usr/bin/env python3
"""Opens N keep-alive connections to a gateway, makes one request on each,
leaves them idle, and prints the gateway's resident memory before and after.

    scripts/idle_connections.py PID HOST:PORT [N]

Raise the open-file limit of both processes first (ulimit -n).
"""
import asyncio
import sys


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def one(host, port, conns):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
    await reader.readexactly(length)
    conns.append((reader, writer))


async def main():
    pid, addr = int(sys.argv[1]), sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
    host, port = addr.rsplit(":", 1)
    before = rss_kib(pid)
    conns = []
    for start in range(0, n, 500):
        await asyncio.gather(*(one(host, int(port), conns) for _ in range(start, min(n, start + 500))))
    await asyncio.sleep(2)
    after = rss_kib(pid)
    print(f"{len(conns)} idle connections: RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB "
          f"({(after - before) / max(len(conns), 1):.2f} KiB per connection)")
    for _, w in conns:
        w.close()


asyncio.run(main())
