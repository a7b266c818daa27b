"""``python -m devserver.bedrock --port 8766``: the Bedrock emulator on its own."""

from devserver.bedrock.server import main

main()
