#!/usr/bin/env bash
# Installs the real tools the deployment tests run, into bin/tools (or
# $OPS_TOOLS_DIR), and says what it did. `make test` calls it before go test.
#
#   docker-compose  Compose v1 (Debian's docker-compose 1.29), apt-get as root
#   composecheck    compose-go v2 (Compose v2's loader), compose/tools module
#   helm            helm.sh/helm/v3/cmd/helm@HELM_VERSION
#   kustomize       sigs.k8s.io/kustomize/kustomize/v5@KUSTOMIZE_VERSION
#   promtool        Debian's prometheus package (as root), else
#                   github.com/prometheus/prometheus/cmd/promtool@PROMETHEUS_VERSION
#   systemd-analyze Debian's systemd, for compose/systemd/meshd.service
#
# A tool that cannot be installed is reported here with the reason, and the
# tests that need it skip; everything else (a tool that rejects a file)
# fails the tests. Go-built tools are rebuilt only when their version
# changes (bin/tools/<tool>.version).
set -u
cd "$(dirname "$0")/.."
HELM_VERSION=${HELM_VERSION:-v3.22.0}
KUSTOMIZE_VERSION=${KUSTOMIZE_VERSION:-v5.8.1}
PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-v0.316.0}
dir=${OPS_TOOLS_DIR:-$PWD/bin/tools}
mkdir -p "$dir"

say() { echo "ops-tools: $*"; }

# go_tool NAME VERSION CMD...: run CMD (which builds NAME into $dir) unless
# $dir/NAME was built at VERSION.
go_tool() {
	local name=$1 ver=$2; shift 2
	if [ -x "$dir/$name" ] && [ "$(cat "$dir/$name.version" 2>/dev/null)" = "$ver" ]; then
		say "$name $ver present"
		return
	fi
	local start=$SECONDS log
	log=$(mktemp)
	if "$@" >"$log" 2>&1; then
		echo "$ver" >"$dir/$name.version"
		say "$name $ver built in $((SECONDS - start)) s"
	else
		rm -f "$dir/$name" "$dir/$name.version"
		say "$name $ver NOT installed (its tests skip): $(grep -v '^go: downloading' "$log" | tail -n 3 | tr '\n' ' ')"
	fi
	rm -f "$log"
}

go_tool helm "$HELM_VERSION" env GOBIN="$dir" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
go_tool kustomize "$KUSTOMIZE_VERSION" env GOBIN="$dir" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
# promtool: a built one in $dir, else one on PATH, else Debian's prometheus
# package (about a minute), else go install — a cold build of promtool's
# dependency tree took 31 min on a loaded 2-core machine, so it comes last.
if [ -x "$dir/promtool" ]; then
	say "promtool $(cat "$dir/promtool.version" 2>/dev/null) present in $dir"
elif command -v promtool >/dev/null 2>&1; then
	say "promtool present: $(promtool --version 2>&1 | head -n 1)"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && {
	start=$SECONDS
	{ apt-get install -y -qq prometheus || { apt-get update -qq && apt-get install -y -qq prometheus; }; } >/dev/null 2>&1
}; then
	say "promtool installed from Debian package prometheus in $((SECONDS - start)) s: $(promtool --version 2>&1 | head -n 1)"
else
	go_tool promtool "$PROMETHEUS_VERSION" env GOBIN="$dir" go install "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
fi
go_tool composecheck "$(sha256sum compose/tools/go.sum compose/tools/composecheck/main.go | sha256sum | cut -c1-16)" \
	sh -c "cd compose/tools && go build -o '$dir/composecheck' ./composecheck"

# apt_tool CMD PACKAGE: install a Debian package when CMD is missing.
apt_tool() {
	local cmd=$1 pkg=$2 start=$SECONDS
	if command -v "$cmd" >/dev/null 2>&1; then
		say "$cmd present"
	elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		if { apt-get install -y -qq "$pkg" || { apt-get update -qq && apt-get install -y -qq "$pkg"; }; } >/dev/null 2>&1; then
			say "$cmd installed from Debian package $pkg in $((SECONDS - start)) s"
		else
			say "$cmd NOT installed (apt-get install $pkg failed; its tests skip)"
		fi
	else
		say "$cmd NOT installed (not root or no apt-get; its tests skip)"
	fi
}
apt_tool systemd-analyze systemd

if command -v docker-compose >/dev/null 2>&1; then
	say "$(docker-compose --version 2>&1 | head -n 1) present"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	start=$SECONDS
	if { apt-get install -y -qq docker-compose || { apt-get update -qq && apt-get install -y -qq docker-compose; }; } >/dev/null 2>&1; then
		say "docker-compose installed from Debian in $((SECONDS - start)) s: $(docker-compose --version 2>&1 | head -n 1)"
	else
		say "docker-compose NOT installed (apt-get install docker-compose failed; Compose v1 test skips)"
	fi
else
	say "docker-compose NOT installed (not root or no apt-get; Compose v1 test skips)"
fi
exit 0
