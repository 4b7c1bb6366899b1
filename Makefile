# tokenbench: `make bench` measures, `make test` checks. Everything installs into .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

RUN    := $(shell date -u +%Y%m%d-%H%M%S)
TB     := $(BIN)/tokenbench

.PHONY: install system system-check cluster-extra web proto test fuzz lint format bench bench-deep bench-full bench-knee bench-50k bench-faults bench-quick \
	bench-cluster bench-lb bench-browser browser-jobs bench-stacks bench-loadgen bench-lean \
	idle-memory report clean

# Locked: requirements.lock pins every dependency, the dev and browser extras' too, with hashes,
# for Python 3.11 on x86_64 Linux; remake it after a change to pyproject.toml's dependencies:
#   uv pip compile pyproject.toml --extra dev --extra browser --generate-hashes \
#     --python-version 3.11 --python-platform x86_64-unknown-linux-gnu -o requirements.lock
# uv installs it (fresh, about 8 s here; pip took 23). Ray (the cluster extra) is not in it:
# bench-cluster installs it.
UV := 0.13.9
$(STAMP): pyproject.toml setup.py clients/_fastpath.c clients/_pump.c requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV)"
	$(BIN)/uv pip sync --quiet --python $(BIN)/python --require-hashes requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	$(BIN)/python -c "import proto; proto.build(force=True)"
	@touch $(STAMP)

# The browser side (docs/browsers.md): npm packages pinned by web/package-lock.json, the gRPC-Web
# stubs generated from proto/tokens.proto (protoc from grpcio-tools, protoc-gen-es from npm),
# bundled by esbuild into web/dist, which every tokenbench origin serves at /web/.
WEBSTAMP := web/dist/.built
READY    := $(STAMP) $(WEBSTAMP)

$(WEBSTAMP): $(STAMP) web/package-lock.json web/build.mjs $(wildcard web/src/*) proto/tokens.proto
	@$(MAKE) --no-print-directory web
	@if [ -f web/dist/bench.html ]; then touch $(WEBSTAMP); fi

web: $(STAMP)  ## build the browser clients and the React page (needs node and npm)
	@if command -v npm >/dev/null 2>&1; then \
		cd web && npm ci --no-audit --no-fund --loglevel=error && cd .. && mkdir -p web/gen && \
		$(BIN)/python -m grpc_tools.protoc -Iproto --plugin=protoc-gen-es=web/node_modules/.bin/protoc-gen-es \
			--es_out=web/gen --es_opt=target=js,import_extension=js proto/tokens.proto && \
		node web/build.mjs; \
	else echo "note: the browser bundle needs node and npm; install with: apt-get install -y nodejs npm"; fi

# The system side, checked first (scripts/system-packages.sh): Linux, Python 3.11+ with venv and
# headers, a C compiler, and the Debian packages that --lb haproxy or nginx, --replay redis,
# tokenbench browser and the web bundle run (command:package). As root with apt-get they are installed;
# otherwise the first seconds print the one command that does (ALLOW_MISSING=1: go on, and the
# jobs that need them are skipped and named in the report).
SYSTEM := haproxy:haproxy nginx:nginx redis-server:redis-server chromium:chromium node:nodejs \
	npm:npm openssl:openssl ss:iproute2
system:  ## install (as root) or name the missing system packages, in the first seconds
	@bash scripts/system-packages.sh $(PYTHON) $(SYSTEM)

system-check: system

install: $(READY)  ## create .venv and install tokenbench with its test tools

proto: $(READY)  ## regenerate the gRPC stubs from proto/tokens.proto
	$(BIN)/python -c "import proto; proto.build(force=True)"

# The suite runs the Ray cluster test too: Ray (the cluster extra, not in the lock) is added.
test: system $(READY)  ## the test suite (real servers on port 0, real clients, a local Ray cluster)
	@$(MAKE) --no-print-directory cluster-extra
	$(BIN)/python -m pytest

cluster-extra: $(STAMP)
	@$(BIN)/python -c "import ray" 2>/dev/null || $(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[cluster]"

fuzz: $(READY)  ## the property and fuzz tests with a wide search (about 10 min)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest tests/test_fuzz.py tests/test_fuzz_http.py \
		-p no:cacheprovider -o timeout=1200

lint: $(READY)  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(READY)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The decision job (bench.profiles.DECISION, docs/profiles in the README): what the verdicts and
# "what to ship" read, and nothing else: the knees at 40 tok/s on the stock stacks, 50,000 users
# on every transport (memory per connection), the three fault scenarios the claims read, one
# load-balancer pass (a backend killed, answers in the pod and in the shared Redis log), one
# browser pass (7 tabs, HTTP/1.1 and HTTP/2), then the report. A job whose system packages are
# missing is skipped and named in the report. T0 is when make started: the wall time recorded in
# jobs.json includes the installs.
T0 := $(shell date +%s)
# The knee search's options, defined once in bench.profiles (for the targets below that reuse it).
KNEE = $(shell $(BIN)/python -c "from bench.profiles import KNEE; print(' '.join(KNEE))")
PROFILE = $(TB) profile $(1) --out results/$(RUN) --started-at $(T0)

bench: system $(READY)  ## installs, then the decision job and its report (results/latest)
	$(call PROFILE,decision) --latest

# Everything else, by name: each adds its jobs to results/$(RUN) and rebuilds the report from
# every job present (make bench-deep PROFILES="stacks gc" RUN=<an earlier make bench run>).
PROFILES ?= passes hold stacks windows gc faults lb proxies edge stop browsers
bench-deep: system $(READY)  ## deeper profiles (passes hold stacks windows gc faults lb proxies edge stop browsers) into RUN
	@for p in $(PROFILES); do $(call PROFILE,$$p) || exit $$?; done

bench-full: system $(READY)  ## the decision job and every deeper profile, one report (a few hours)
	$(call PROFILE,full) --latest

bench-knee: $(READY)  ## users per server core at 40 tok/s until p99 > 250 ms or goodput < 99 % (~12 min)
	$(TB) bench --transport all --find-knee --knee-start 100 --knee-factor 1.25 --knee-refine 2 \
		--users 3000 --ramp 5s --hold 10 --think 0 --out results/$(RUN)-knee

bench-50k: $(READY)  ## 50,000 connections per transport, at a token rate one core carries (~25 min)
	$(TB) bench --transport all --users 50000 --ramp 300s --hold 60 --rate 0.1 --tokens 30 \
		--think 5 --out results/$(RUN)-50k

bench-faults: $(READY)  ## every fault scenario, transport and client mode (~20 min)
	$(TB) faults --transport all --scenario all --mode both --users 5 --out results/$(RUN)-faults

bench-quick: system $(READY)  ## a first look: every transport at 200 and 400 users, with a report (~3 min)
	$(TB) bench --transport all --ramp 200:9s,400:9s --users 400 --hold 0 --think 1 \
		--out results/$(RUN)-quick
	$(TB) report results/$(RUN)-quick --out results/$(RUN)-quick/report
	@echo "report: results/$(RUN)-quick/report/REPORT.md"

bench-cluster: $(READY) cluster-extra  ## make bench's knee job, its load processes on a local Ray cluster (docs/cluster.md)
	$(TB) bench --transport all $(KNEE) --cluster local --out results/$(RUN)-cluster-knee
	@echo "compare: tokenbench compare results/latest/knee results/$(RUN)-cluster-knee"

# The production topology (docs/topology.md): faults behind HAProxy with three backends and the
# simulated LLM, for each replay log (Redis, pod memory) without and with sticky sessions; then
# the same 100 users at 40 tok/s on one server, through the LB, through the LB and Redis, and
# through the LB with HAProxy's own default (no http-no-delay); then the report.
LB    := --lb haproxy --backends 3 --source llm
HOPS  := --transport all --users 100 --ramp 3s --hold 6 --windows 3 --think 0
LBRUN := results/$(RUN)-lb

bench-lb: $(READY)  ## faults behind the LB (redis, pod; sticky or not), the hops' cost, report (~50 min)
	$(TB) faults $(LB) --replay redis --scenario all --out $(LBRUN)/faults-redis
	$(TB) faults $(LB) --replay pod --scenario all --out $(LBRUN)/faults-pod
	$(TB) faults $(LB) --replay pod --sticky --scenario all --out $(LBRUN)/faults-pod-sticky
	$(TB) faults $(LB) --replay redis --sticky --scenario all --out $(LBRUN)/faults-redis-sticky
	$(TB) bench $(HOPS) --out $(LBRUN)/one-server
	$(TB) bench $(HOPS) --lb haproxy --backends 3 --out $(LBRUN)/hops-lb
	$(TB) bench $(HOPS) $(LB) --replay redis --out $(LBRUN)/hops-lb-redis
	$(TB) bench $(HOPS) --lb haproxy --backends 3 --no-lb-no-delay --out $(LBRUN)/hops-lb-nodelay-off
	$(TB) report $(LBRUN)/faults-redis $(LBRUN)/faults-pod $(LBRUN)/faults-pod-sticky \
		$(LBRUN)/faults-redis-sticky \
		$(LBRUN)/one-server $(LBRUN)/hops-lb $(LBRUN)/hops-lb-redis $(LBRUN)/hops-lb-nodelay-off \
		--out $(LBRUN)/report
	@echo "report: $(LBRUN)/report/REPORT.md"

# Which server runs the FastAPI apps (the question after "which transport"): the knee of SSE and
# long polling on each stack, in one run so they compare as ratios (about 15 minutes).
bench-stacks: $(READY)  ## SSE and long polling knees on stock (uvicorn), lean and granian, report
	$(TB) bench --transport sse,poll --stack stock,lean,granian $(KNEE) --out results/$(RUN)-stacks
	$(TB) report results/$(RUN)-stacks --out results/$(RUN)-stacks/report
	@echo "report: results/$(RUN)-stacks/report/REPORT.md"

# What the load generator costs (about 12 minutes): gRPC and long polling at a fixed load, read
# by the compiled path (gRPC: the h2 client) and by the Python clients (gRPC: grpcio's); then
# gRPC's knee read both ways, in one run so they compare as ratios.
LOADGEN := --transport grpc,poll --users 250 --ramp 3s --hold 4 --windows 3 --think 0
bench-loadgen: $(READY)  ## load-generator CPU per token, compiled against Python; gRPC knees both ways
	$(TB) bench $(LOADGEN) --out results/$(RUN)-loadgen/compiled
	$(TB) bench $(LOADGEN) --no-fast-path --out results/$(RUN)-loadgen/python
	$(TB) bench --transport grpc $(KNEE) --out results/$(RUN)-loadgen/knee-h2
	$(TB) bench --transport grpc --no-fast-path $(KNEE) --out results/$(RUN)-loadgen/knee-grpcio
	$(TB) report results/$(RUN)-loadgen/knee-h2 --out results/$(RUN)-loadgen/report
	@echo "report: results/$(RUN)-loadgen/report/REPORT.md"

# The lean stacks against issue 12's targets (about 25 minutes): knees with a 100 ms write
# window; then 50,000 connections at 1 token/s each on lean SSE and lean WebSocket, collector
# tuned, ramped at the pace the server accepts them: 60-token answers (a new conversation per
# user every 65 s: about 770 prompts and connections a second), then lean SSE with 600-token
# answers (about 80 a second), which separates holding connections from churning them; then
# gRPC's knees on grpc.aio and on the lean HTTP/2 server, writing each token and at 100 ms.
bench-lean: $(READY)  ## knees at --flush-ms 100, and 50,000 connections at 1 tok/s on the lean stacks
	$(TB) bench --transport sse,ws,poll --stack lean --flush-ms 100 $(KNEE) --users 8000 \
		--out results/$(RUN)-lean/knee-flush100
	$(TB) bench --transport sse,ws --stack lean --gc tuned --users 50000 --rate 1 --tokens 60 \
		--think 5 --adaptive-ramp --ramp 90s --cooldown 5 --hold 15 --windows 3 --no-pin \
		--out results/$(RUN)-lean/hold-50k
	$(TB) bench --transport sse --stack lean --gc tuned --users 50000 --rate 1 --tokens 600 \
		--think 5 --adaptive-ramp --ramp 300s --cooldown 10 --hold 15 --windows 3 --no-pin \
		--out results/$(RUN)-lean/hold-50k-long
	$(TB) bench --transport grpc --stack stock,lean --flush-ms 0,100 $(KNEE) \
		--out results/$(RUN)-lean/knee-grpc
	$(TB) report results/$(RUN)-lean/knee-flush100 results/$(RUN)-lean/hold-50k \
		results/$(RUN)-lean/hold-50k-long results/$(RUN)-lean/knee-grpc \
		--out results/$(RUN)-lean/report
	@echo "report: results/$(RUN)-lean/report/REPORT.md"

# Real browsers (docs/browsers.md), about 12 minutes: 1, 6, 7 and 10 tabs of every browser
# client over HTTP/1.1 and HTTP/2 (HAProxy, TLS, ALPN h2); a close, a black hole and a server
# restart behind HAProxy; renderer CPU at 300 tok/s in 4 tabs (gRPC-Web with grpcio's native
# server CPU beside it); the React page.
BROWSER_RUNS := browser-tabs browser-faults browser-cpu browser-react
browser-jobs: $(READY)
	$(TB) browser --transport all --tabs 1,6,7,10 --tokens 120 --rate 40 --http 1.1,2 \
		--out $(OUT)/browser-tabs
	$(TB) browser --transport all --fault close,blackhole,lb-restart --tokens 400 --rate 40 \
		--wait 25 --out $(OUT)/browser-faults
	$(TB) browser --transport all --client as-is --tabs 4 --tokens 3000 --rate 300 \
		--out $(OUT)/browser-cpu
	$(TB) browser --transport all --client as-is --page react --tabs 1,7 --tokens 120 --rate 40 \
		--out $(OUT)/browser-react

bench-browser: $(READY)  ## real Chromium tabs: the connection limit, faults, renderer CPU, React; report (~12 min)
	@$(MAKE) --no-print-directory browser-jobs OUT=results/$(RUN)-browser
	$(TB) report $(BROWSER_RUNS:%=results/$(RUN)-browser/%) --out results/$(RUN)-browser/report
	@echo "report: results/$(RUN)-browser/report/REPORT.md"

BASELINE := results/20261207-050405

report: $(READY)  ## rebuild the committed baseline's REPORT.md and charts from its JSON
	$(TB) report $(addprefix $(BASELINE)/,knee hold-50k faults lb-pod lb-redis lb-redis-sse browser) \
		--out $(BASELINE)/report

readme: $(READY)  ## rewrite the generated tables of README.md and docs/findings.md from the committed runs
	$(BIN)/python -m bench.report.excerpt

idle-memory: $(READY)  ## server RSS per idle open connection, per transport
	$(TB) idle-memory --connections 5000

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache proto/*_pb2*.py proto/*_pb2.pyi \
		clients/*.so
