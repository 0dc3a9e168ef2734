#!/usr/bin/env bash
# A real Claude Code check of `meshctl setup claude` (docs/mcp.md "Checked
# with the real Claude Code"): installs the Claude Code CLI from npm into a
# temporary directory, starts a throwaway meshd (own PostgreSQL via
# scripts/pg.sh, embedded NATS, a free port), creates a mesh as a user whose
# HOME is temporary, runs `meshctl setup claude --write` in a project there,
# and asks Claude Code itself: `claude mcp list` and `claude mcp get meshd`
# start the MCP server and report whether it connected — in a folder not yet
# trusted, after the trust dialog, and with --user. No API key is needed.
#
# Not part of `make test` (it needs npm and the network to the npm registry).
#
#   scripts/claude-code-check.sh            # prints the transcript
#   CLAUDE_CODE_VERSION=2.1.197 scripts/claude-code-check.sh
#   KEEP=1 scripts/claude-code-check.sh     # leave the temp dir for a look
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/claude-code-check.XXXXXX)
chmod 755 "$work" # scripts/pg.sh runs PostgreSQL as the postgres user when run as root
meshd_pid=""
cleanup() {
	if [ -n "$meshd_pid" ]; then kill "$meshd_pid" 2>/dev/null || true; wait "$meshd_pid" 2>/dev/null || true; fi
	"$repo/scripts/pg.sh" stop "$work/pg" >/dev/null 2>&1 || true
	if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}
trap cleanup EXIT

say() { printf '\n$ %s\n' "$*"; }
run() { say "$*"; "$@"; }

# Claude Code from npm (the version npm gives unless CLAUDE_CODE_VERSION).
pkg="@anthropic-ai/claude-code${CLAUDE_CODE_VERSION:+@$CLAUDE_CODE_VERSION}"
npm install --prefix "$work/cc" --no-audit --no-fund "$pkg" >"$work/npm.log" 2>&1 || { cat "$work/npm.log" >&2; exit 1; }
claude="$work/cc/node_modules/.bin/claude"

# meshd and meshctl, built outside the repository.
(cd "$repo" && go build -o "$work/bin/meshd" ./cmd/meshd && go build -o "$work/bin/meshctl" ./cmd/meshctl)
export PATH="$work/bin:$PATH"

# A throwaway broker.
db=$("$repo/scripts/pg.sh" start "$work/pg")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DATABASE_URL="$db" BROKER_PORT="$port" LOG_LEVEL=warn meshd serve >"$work/meshd.log" 2>&1 &
meshd_pid=$!
for _ in $(seq 100); do
	curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
	sleep 0.1
done
token=$(DATABASE_URL="$db" LOG_LEVEL=warn meshd token create --user alice)

# A user with nothing but a temporary HOME and a project.
export HOME="$work/home" MESHCTL_CONFIG_DIR=
mkdir -p "$HOME/project"
cd "$HOME/project"
echo "# claude-code $("$claude" --version)"
run meshctl login --token "$token" --broker "ws://127.0.0.1:$port/ws" | sed "s/$token/<token>/"
run meshctl mesh create "Demo Team" --name alice
run meshctl setup claude --write
run cat .mcp.json
# 1. A project Claude Code has never opened: it does not read the approval
#    in .claude/settings.json before the folder is trusted.
run "$claude" mcp list
# 2. What accepting the trust dialog of an interactive `claude` records in
#    ~/.claude.json; then the approval in .claude/settings.json counts.
say "(accept the folder trust dialog: projects[\"$PWD\"].hasTrustDialogAccepted = true in ~/.claude.json)"
python3 - "$HOME/.claude.json" "$PWD" <<'PY'
import json, sys
path, project = sys.argv[1], sys.argv[2]
try:
    cfg = json.load(open(path))
except FileNotFoundError:
    cfg = {}
cfg.setdefault("projects", {}).setdefault(project, {})["hasTrustDialogAccepted"] = True
json.dump(cfg, open(path, "w"), indent=2)
PY
run "$claude" mcp list
run "$claude" mcp get meshd
# 3. The user scope (~/.claude.json) needs no approval, in any folder.
mkdir -p "$HOME/other"
cd "$HOME/other"
run meshctl setup claude --user --write
run "$claude" mcp get meshd
