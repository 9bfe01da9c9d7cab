"""p2core-server: a polyproto core home and foreign server (PROTOCOL.md sections 1-7).

The aiohttp application (`server.app`), its REST routes (`server.routes`), the
rules for ID-Certs (`server.certs`) and KeyPackages (`server.keypackage`), and
federation with other servers (`server.federation`).
"""
