"""What the tests share, importable by name (conftest.py files hold only fixtures).

- ``stack``: the local stack as a subprocess, and a real client's view of a turn;
- ``faults``: users, connection lookups and the stack's fault switchboard (devserver/control.py);
- ``frames``: every frame a client receives, checked against the protocol's schema;
- ``browser``: the chat page in Chromium (constants, a page wrapper, screenshots);
- ``fakes``: the management API and Bedrock stand-ins for in-process tests;
- ``tokens``: signed test tokens;
- ``timing``: waiting on a condition, not on the clock (``wait_until``, ``ManualClock``);
- ``events``: Lambda events as API Gateway and SQS deliver them (built by devserver's builders).
"""
