#!/usr/bin/env bash
# Build mongoimport (github.com/mongodb/mongo-tools) from the Go module proxy into .services/bin/mongoimport,
# for bench/ingest_server.py's side-by-side import. Idempotent: a binary already built from $VERSION is kept.
# Prints one line; exits 1 (with the go command's error) if it cannot be built.
#
#   bash bench/build-mongoimport.sh            # MONGO_TOOLS_VERSION overrides the version
#
# mongo-tools' release tags (100.x) are not Go semver: a commit or tag resolves to a pseudo-version.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
BIN_DIR="$REPO/.services/bin"
TARGET="$BIN_DIR/mongoimport"
STAMP="$TARGET.version"
VERSION="${MONGO_TOOLS_VERSION:-100.10.0}"
PACKAGE="github.com/mongodb/mongo-tools/mongoimport/main"

if [[ -x "$TARGET" && -f "$STAMP" && "$(cat "$STAMP")" == "$VERSION" ]]; then
    echo "mongoimport $VERSION: already built at $TARGET"
    exit 0
fi

mkdir -p "$BIN_DIR"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log="$work/build.log"
# A throwaway module, so the build does not touch any go.mod of the project.
if (cd "$work" && go mod init mongoimport-build >/dev/null 2>&1 \
        && go mod download -x "github.com/mongodb/mongo-tools@$VERSION" \
        && go get "github.com/mongodb/mongo-tools@$VERSION" \
        && CGO_ENABLED=0 go build -o "$work/mongoimport" "$PACKAGE") >"$log" 2>&1; then
    mv "$work/mongoimport" "$TARGET"
    echo "$VERSION" >"$STAMP"
    echo "mongoimport $VERSION: built at $TARGET"
    exit 0
fi
echo "mongoimport $VERSION: NOT built (github.com/mongodb/mongo-tools@$VERSION from the Go module proxy): $(grep -v '^#' "$log" | tr '\n' ' ' | sed 's/  */ /g' | cut -c1-400)"
exit 1
