#!/usr/bin/env python3
"""A TCP relay on 127.0.0.1 that delays every byte by DELAY_MS in each direction: a slow link
(a VPN, a remote site) between a client and a server on this machine. Unlike a relay that
sleeps between chunks, it keeps forwarding while earlier bytes are in flight, so many requests
at once take one delay, not one each, as on a real link.

usage: slow_link.py LISTEN_PORT TARGET_PORT DELAY_MS
"""
import asyncio
import socket
import sys


def quickack(sock):
    # Linux turns quick acknowledgement off again by itself: set it after every read.
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    except (AttributeError, OSError):
        pass


async def pipe(reader, writer, delay, sock):
    loop = asyncio.get_running_loop()
    try:
        while True:
            data = await reader.read(65536)
            quickack(sock)
            if not data:
                break
            # Delivered `delay` after it arrived; call_later keeps the order of equal delays.
            loop.call_later(delay, writer.write, data)
    finally:
        loop.call_later(delay, writer.close)


async def main():
    listen, target, delay_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    delay = delay_ms / 1000

    async def client(cr, cw):
        sr, sw = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(
            pipe(cr, sw, delay, cw.get_extra_info("socket")),
            pipe(sr, cw, delay, sw.get_extra_info("socket")),
        )

    server = await asyncio.start_server(client, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


asyncio.run(main())
