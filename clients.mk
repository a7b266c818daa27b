# Web client and browser tests (included by the Makefile).
#
# The browser tests drive Debian's Chromium with Playwright (a pinned PyPI package); the browser
# is never downloaded by a test tool (no `playwright install`): `make chromium` installs it with
# apt-get, once.

CHROMIUM ?= /usr/bin/chromium
APT_GET  := $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: chromium browser-test screenshot

## Debian's chromium for the browser tests; does nothing when it is already installed.
chromium:
	@if [ -x "$(CHROMIUM)" ]; then \
		echo "chromium: $(CHROMIUM) is installed"; \
	else \
		$(APT_GET) update && $(APT_GET) install -y chromium && test -x "$(CHROMIUM)"; \
	fi

## The web page's tests in a real browser (each starts its own local stack).
browser-test: install chromium
	$(BIN)/python -m pytest tests/browser

## Refresh docs/screenshot.png (the README's) from the browser test of a streamed answer.
screenshot: install chromium
	UPDATE_SCREENSHOT=1 $(BIN)/python -m pytest tests/browser -k progressively
