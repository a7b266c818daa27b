"""A turn: one question and its answer, from ``accepted`` to exactly one terminal event.

- ``record``: the turn's fields as stored; ``outcomes``: its statuses and the ``Failure`` type;
- ``actions``: what a client's frames do to turns at $default (ask, resume, cancel, return_control);
- ``run``: the worker's side: claim, call the backend, relay, watch, persist, end;
- ``relay`` and ``outbox``: posting the answer in order, coalesced into few frames;
- ``lifecycle``: what both sides share; ``queue``: the SQS hop; ``ids``: turn and session ids;
- ``report``: what an ended turn tells operators; ``eventbus``: its TurnCompleted/TurnFailed event.
"""
