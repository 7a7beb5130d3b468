"""The baseline for `bench.service`: the same Falcon + msgspec decode, no Kafka at all.

Served by the same gunicorn settings, so the difference to the real API is what producing
to Kafka (and waiting for its acknowledgement) costs.
"""

from __future__ import annotations

import falcon

from service.models import decode_batch, decode_reading


class Single:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        decode_reading(req.bounded_stream.read())
        resp.status = 202
        resp.content_type = falcon.MEDIA_JSON
        resp.data = b'{"status":"accepted"}'


class Batch:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        n = len(decode_batch(req.bounded_stream.read()))
        resp.status = 202
        resp.content_type = falcon.MEDIA_JSON
        resp.data = b'{"accepted":%d}' % n


class Ready:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ready"}


app = falcon.App()
app.add_route("/sensor", Single())
app.add_route("/sensor/batch", Batch())
app.add_route("/readyz", Ready())
