"""A TLS-terminating reverse proxy for the browser test, as a site would put in front of the
view: accepts TLS on 127.0.0.1:LISTEN_PORT (printed on the first line of stdout once it listens), and passes
the bytes of each connection, decrypted, to the view's address, and back.

    python3 tls_proxy.py CERT KEY UPSTREAM_HOST UPSTREAM_PORT LISTEN_PORT
"""

import asyncio
import ssl
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main():
    cert, key, host, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    listen = int(sys.argv[5])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    async def serve(client_reader, client_writer):
        try:
            view_reader, view_writer = await asyncio.open_connection(host, port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, view_writer), pipe(view_reader, client_writer)
        )

    server = await asyncio.start_server(serve, "127.0.0.1", listen, ssl=context)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
