"""A function that answers every request with one constant JSON body.

Served by :class:`app.local.server.FunctionServer` exactly like the prediction
function, it measures what functions-framework, gunicorn and flask cost on their
own: the ceiling the real function is compared with.
"""

from __future__ import annotations

import json

import flask
import functions_framework

# About the size of a real score, so both servers write the same bytes.
BODY = json.dumps(
    {
        "card": "************0000",
        "fraud_probability": 0.000123,
        "is_fraud": False,
        "threshold": 0.334760,
        "model_version": "v0000",
        "features_as_of": "2026-01-01T00:00:00+00:00",
        "snapshot_id": "snap_00000000T000000_constant",
    }
)


@functions_framework.http
def constant(request: flask.Request) -> flask.Response:
    # Read the body as the real function does, so the two do the same I/O.
    request.get_data()
    # Built the way the real function builds its answers (the response class directly,
    # from bytes), so the two pay the same for it.
    return flask.Response(BODY.encode(), 200, content_type="application/json")
