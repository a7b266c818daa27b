"""agentstream clients: a CLI (``python -m client``) and a web chat page (``client/web``).

The CLI's modules, each importable without the ones listed after it (tests and tools can drive a
turn without a terminal):

    exit_codes  what scripts see: 0 answered, 1 error event, 2 usage, 3 refused, 4 lost (upload: 5 to 8)
    connection  the WebSocket: token in the URL, Refused / Lost / Dropped, reconnect with backoff
    turn        one turn to its terminal event across reconnects (seq, resume, cancel); prints nothing
    render      the terminal's text: TurnPrinter, ConnectionPrinter, describe_error, describe_inputs
    tools       return of control: results in Bedrock's shape, asked of the person at the terminal
    documents   ``upload`` (the presigned S3 POST, multipart by hand, then the document's statuses
                across reconnects) and ``documents``; prints through render's StatusLine
    cli         arguments, ``ask``, the chat REPL, Ctrl-C handling
"""
