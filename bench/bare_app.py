"""The no-Kafka baseline for `bench.service`: the same Falcon ASGI app shape and msgspec decode,
served by the same gunicorn settings and uvicorn workers, with no producer at all, so the
difference to the real API is what producing to Kafka (and awaiting its acknowledgement) costs.
"""

from __future__ import annotations

import falcon
import falcon.asgi

from pipeline.reading import decode_batch, decode_reading


class Single:
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        decode_reading(await req.stream.read())
        resp.status = 202
        resp.content_type = falcon.MEDIA_JSON
        resp.data = b'{"status":"accepted"}'


class Batch:
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        n = len(decode_batch(await req.stream.read()))
        resp.status = 202
        resp.content_type = falcon.MEDIA_JSON
        resp.data = b'{"accepted":%d}' % n


class Ready:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"status": "ready"}


app = falcon.asgi.App()
app.add_route("/sensor", Single())
app.add_route("/sensor/batch", Batch())
app.add_route("/readyz", Ready())
