# hawser's own meta-code. `make` runs hawser on .env; `make test` runs the
# whole suite. Nothing here is needed by hawser at run time.

GO      ?= go
BIN     := bin/hawser
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
# The base image of examples/hello. A host that can reach a registry pulls it;
# one that cannot (an offline test machine) gets it imported from Debian's
# busybox-static.
BUSYBOX := busybox:1.36

.PHONY: run build test vet deps base-image bench

run: build .env base-image
	$(BIN) -env .env serve

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/hawser

.env:
	cp .env.example .env
	@echo "created .env from .env.example: edit it to point hawser at your repository"

test: deps vet
	$(GO) test -count=1 -timeout 18m ./...

# The benchmarks of bench/README.md: the idle tick (go test), resident memory
# of an idle daemon and a recreate against docker-compose (scripts); about 5
# minutes, everything they create is removed.
bench: base-image
	$(GO) test -run '^$$' -bench . -benchtime 200x -count 3 ./bench/
	bench/rss.sh
	bench/recreate.sh

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "not gofmt'd: $$unformatted"; exit 1; fi
	$(GO) vet ./...

# What the tests need from the host: git (go-git's file transport runs it), a
# static busybox to build test images from, since no registry is reachable,
# and chromium with a font to render the dashboard in. Without recommends:
# chromium's would pull a desktop's worth of packages into CI.
deps:
	@missing=""; \
	command -v git >/dev/null || missing="$$missing git"; \
	dpkg -s busybox-static >/dev/null 2>&1 || missing="$$missing busybox-static"; \
	command -v chromium >/dev/null || missing="$$missing chromium fonts-liberation"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

base-image:
	@docker image inspect $(BUSYBOX) >/dev/null 2>&1 || docker pull $(BUSYBOX) 2>/dev/null || { \
		$(MAKE) --no-print-directory deps && \
		echo "no registry reachable: importing $(BUSYBOX) from /bin/busybox" && \
		root=$$(mktemp -d) && mkdir -p $$root/bin $$root/tmp $$root/www && chmod 1777 $$root/tmp && \
		cp /bin/busybox $$root/bin/ && \
		for a in $$(/bin/busybox --list); do [ "$$a" = busybox ] || ln -s busybox $$root/bin/$$a; done && \
		tar -C $$root -c . | docker import - $(BUSYBOX) >/dev/null && rm -rf $$root; }

# The front-end benchmarks of issue 4 (bench/README.md): failed requests
# during updates against docker-compose, proxy overhead against nginx and
# Caddy; about 6 minutes; needs wrk, nginx and caddy (Debian packages).
.PHONY: bench-frontend
bench-frontend: base-image
	bench/frontend.sh
