# responsibility-operator — every target a developer, CI or a new user needs.
# Tools are built at pinned versions into a per-user cache and linked into bin/,
# so a fresh clone on a machine that built them once starts in seconds.

# The release: the chart's appVersion is the one place it is written.
CHART_DIR ?= charts/responsibility-operator
VERSION ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$$/\1/p' $(CHART_DIR)/Chart.yaml)
IMAGE_REPO ?= ghcr.io/responsibility-operator/responsibility-operator
IMG ?= $(IMAGE_REPO):v$(VERSION)
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64
K8S_VERSION ?= v1.37.2
CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
HELM_VERSION ?= v4.3.2
KREW_VERSION ?= v0.4.3
PROMTOOL_VERSION ?= v0.316.0

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

LOCALBIN ?= $(CURDIR)/bin
TOOLS_CACHE ?= $(or $(RESPONSIBILITY_CACHE_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/responsibility-operator)
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint
HELM ?= $(LOCALBIN)/helm
KUBECTL ?= $(LOCALBIN)/k8s/kubectl
KUBEBUILDER_ASSETS ?= $(LOCALBIN)/k8s
export KUBEBUILDER_ASSETS

GO_TEST_FLAGS ?= -count=1

.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Quick start

.PHONY: demo
demo: controlplane build install-plugin ## Start a local control plane, apply sample models and workloads, run the operator, show the annotated objects.
	go run ./hack/demo

.PHONY: test
test: verify lint controlplane helm krew promtool chromium ## Run every check and test: generated files, lint, unit, envtest integration, e2e, the model tests and a short fuzz run.
	go test $(GO_TEST_FLAGS) ./...
	$(MAKE) --no-print-directory test-models
	$(MAKE) --no-print-directory test-fuzz

.PHONY: bench
bench: controlplane build ## Measure convergence, writes, latency and memory against the API server's raw write rate (BENCH_FLAGS="-n 50000").
	go run ./hack/bench $(BENCH_FLAGS)

.PHONY: bench-peers
bench-peers: controlplane build ## Compare with a plain client and Kyverno's mutate-existing paths, each on a fresh control plane (BENCH_PEERS_FLAGS="-n 3000").
	hack/bench-peers/kyverno.sh $(LOCALBIN)
	go run ./hack/bench-peers $(BENCH_PEERS_FLAGS)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRD, RBAC and webhook manifests from the Go markers, and copy config/ into the Helm chart.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./..." output:crd:artifacts:config=config/crd/bases
	go run ./hack/chart

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: docs
docs: ## Generate docs/catalog.md from config/catalog and docs/catalog-limits.yaml.
	go run ./hack/catalog-docs

UPSTREAM_MIRROR ?=

.PHONY: upstream
upstream: ## Vendor the upstream CRDs (test/crds) and corpus (test/upstream) again from GitHub, or from git mirrors in UPSTREAM_MIRROR.
	go run ./hack/upstream $(if $(UPSTREAM_MIRROR),-mirror $(UPSTREAM_MIRROR))

.PHONY: verify
verify: ## Fail when a generated file (deepcopy, CRD, RBAC, webhook, docs/catalog.md) is stale.
	hack/verify-generated.sh

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -s -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: golangci-lint ## Run golangci-lint (includes gofmt and go vet).
	$(GOLANGCI_LINT) run ./...

.PHONY: test-unit
test-unit: ## Run only the unit tests (no control plane), the catalog's tests and the upstream corpus offline.
	go test $(GO_TEST_FLAGS) ./api/... ./internal/evaluate/... ./internal/modeltest/...

# Fuzz by count, not time: a time-boxed run can fail spuriously on Go 1.26
# (golang/go#75804). A failing input lands in internal/evaluate/testdata/fuzz.
FUZZ_TARGETS ?= FuzzEvaluate FuzzProjection FuzzParseDuties FuzzCompileRule FuzzWriteJSONString
WATCH_FUZZ_TARGETS ?= FuzzProjectingDecoder
FUZZ_EXECS ?= 2000

.PHONY: test-fuzz
test-fuzz: ## Fuzz rule evaluation, annotation parsing and the watch decoder briefly (FUZZ_EXECS=100000 for longer); the seed corpus runs in every go test.
	for target in $(FUZZ_TARGETS); do \
		go test ./internal/evaluate/ -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZ_EXECS)x -fuzzminimizetime 50x -parallel 1 || exit 1; \
	done
	for target in $(WATCH_FUZZ_TARGETS); do \
		go test ./internal/watch/ -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZ_EXECS)x -fuzzminimizetime 50x -parallel 1 || exit 1; \
	done

.PHONY: test-models
test-models: ## Run the catalog's tests and the upstream corpus with kubectl responsibility test (JUnit in tmp/model-tests.xml).
	go build -o $(LOCALBIN)/kubectl-responsibility ./cmd/kubectl-responsibility
	@mkdir -p tmp
	$(LOCALBIN)/kubectl-responsibility test config/catalog/tests test/upstream --require-all
	$(LOCALBIN)/kubectl-responsibility test config/catalog/tests test/upstream --require-all -o junit > tmp/model-tests.xml

.PHONY: test-integration
test-integration: controlplane promtool chromium ## Run the envtest suites against a real kube-apiserver and etcd.
	go test $(GO_TEST_FLAGS) ./internal/controller/... ./test/...

##@ Build

.PHONY: build
build: ## Build the manager binary into bin/.
	go build -o $(LOCALBIN)/manager ./cmd/manager

.PHONY: run
run: manifests ## Run the operator against the current kubeconfig.
	go run ./cmd/manager --enable-webhook=false

.PHONY: dist
dist: manifests controlplane ## Write dist/install.yaml: the CRD, RBAC, operator and webhook (cert-manager) for kubectl apply, with image IMG.
	KUBECTL=$(KUBECTL) hack/dist.sh dist/install.yaml $(IMG) $(VERSION)

.PHONY: chart-package
chart-package: manifests helm ## Package the Helm chart into dist/ (helm lint first).
	$(HELM) lint --strict $(CHART_DIR)
	$(HELM) package $(CHART_DIR) -d dist

.PHONY: plugin-archives
plugin-archives: ## Cross-compile the kubectl plugin into dist/plugin: a reproducible archive per platform, sha256sums.txt and the krew manifest responsibility.yaml (VERSION).
	go run ./hack/release -version $(VERSION) -out dist/plugin

.PHONY: image
image: ## Build the manager's multi-arch OCI image without Docker into bin/image (IMG, VERSION, IMAGE_PLATFORMS; SOURCE_DATE_EPOCH or the commit time fixes every timestamp).
	go run ./hack/image -version $(VERSION) -tag $(IMG) -platforms $(IMAGE_PLATFORMS) -out $(LOCALBIN)/image

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t $(IMG) .

.PHONY: install-plugin
install-plugin: ## Build the kubectl plugin into bin/kubectl-responsibility and say how to put it on PATH.
	go build -o $(LOCALBIN)/kubectl-responsibility ./cmd/kubectl-responsibility
	@echo "Built $(LOCALBIN)/kubectl-responsibility. kubectl runs plugins named kubectl-* found on PATH:"
	@echo "  export PATH=\"$(LOCALBIN):\$$PATH\"                 # this shell only, or"
	@echo "  install -m 0755 $(LOCALBIN)/kubectl-responsibility ~/.local/bin/   # a directory already on PATH"
	@echo "then: kubectl responsibility --help   (kubectl plugin list shows it)"

##@ Deployment (current kubeconfig)

.PHONY: install
install: manifests controlplane ## Install the CRDs.
	$(KUBECTL) apply -k config/crd

.PHONY: uninstall
uninstall: controlplane ## Remove the CRDs (and with them every model).
	$(KUBECTL) delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: manifests controlplane ## Deploy the operator with image IMG.
	cd config/manager && $(KUBECTL) kustomize . >/dev/null
	$(KUBECTL) kustomize config/default | sed 's|image: controller:latest|image: $(IMG)|' | $(KUBECTL) apply -f -

.PHONY: undeploy
undeploy: controlplane ## Remove the operator. Models are deleted first so their annotations are cleaned up.
	$(KUBECTL) delete --ignore-not-found --wait responsibilitymodels --all
	$(KUBECTL) delete --ignore-not-found -k config/default

##@ Tools

.PHONY: controlplane
controlplane: ## Build kube-apiserver, etcd and kubectl from Go modules into bin/k8s (cached).
	K8S_VERSION=$(K8S_VERSION) hack/controlplane-bins.sh $(LOCALBIN)/k8s

.PHONY: controller-gen
controller-gen: ## Install controller-gen into bin/.
	@hack/go-tool.sh $(LOCALBIN) controller-gen sigs.k8s.io/controller-tools/cmd/controller-gen $(CONTROLLER_TOOLS_VERSION)

.PHONY: helm
helm: ## Install helm into bin/.
	@hack/go-tool.sh $(LOCALBIN) helm helm.sh/helm/v4/cmd/helm $(HELM_VERSION)

.PHONY: krew
krew: ## Install krew into bin/ (the plugin archives' install test runs it).
	@hack/go-tool.sh $(LOCALBIN) krew sigs.k8s.io/krew/cmd/krew $(KREW_VERSION)

.PHONY: chromium
chromium: ## Install Chromium (Debian's package: 155 MB to download, 480 MB installed) for the HTML report's browser test (test/report); does nothing when it is there.
	@hack/chromium.sh

.PHONY: promtool
promtool: ## Install promtool (Prometheus 3.16.0) into bin/: test/monitoring checks the alert rules and the dashboard's queries with it.
	@hack/go-tool.sh $(LOCALBIN) promtool github.com/prometheus/prometheus/cmd/promtool $(PROMTOOL_VERSION)

.PHONY: golangci-lint
golangci-lint: ## Install golangci-lint into bin/.
	@hack/go-tool.sh $(LOCALBIN) golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint $(GOLANGCI_LINT_VERSION)
