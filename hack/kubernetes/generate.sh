#!/usr/bin/env bash
# Generates third_party/kubernetes: k8s.io/kubernetes at the version go.mod
# requires, copied from the Go module cache, its hash checked, with the
# patches in hack/kubernetes/patches applied with zero fuzz. go.mod replaces
# k8s.io/kubernetes with that directory (see docs/queue-fix.md).
#
# Usage: hack/kubernetes/generate.sh [dest]   (dest defaults to third_party/kubernetes)
# Idempotent: does nothing when dest was generated from the same module and
# patches (dest/.ballast-generated records them).
set -euo pipefail
cd "$(dirname "$0")/../.."
GO=${GO:-go}
MODULE=k8s.io/kubernetes
VERSION=v1.37.2
# The module's hash as go.sum records it (h1: = dirhash Hash1 of the module zip's files).
WANT_SUM='h1:A2VDEiObzkYqFTKhSsn0ZEb0RlLEXpHWj93gi2HqEwE='
DEST=${1:-third_party/kubernetes}
PATCHES=(hack/kubernetes/patches/*.patch)

die() { echo "hack/kubernetes/generate.sh: $*" >&2; exit 1; }

# The pinned version must be the one go.mod requires: a bump of Kubernetes
# must come with a new look at the patches.
required=$(awk -v m="$MODULE" '$1 == m && $2 ~ /^v/ {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' go.mod)
[[ "$required" == "$VERSION" ]] || die "go.mod requires $MODULE $required, this script patches $VERSION: update VERSION, WANT_SUM and the patches together"
if grep -q "^$MODULE $VERSION h1:" go.sum && ! grep -qx "$MODULE $VERSION $WANT_SUM" go.sum; then
	die "go.sum records another hash for $MODULE $VERSION than $WANT_SUM"
fi

stamp="$VERSION $WANT_SUM $(cat "${PATCHES[@]}" hack/kubernetes/generate.sh | sha256sum | cut -d' ' -f1)"
if [[ -f "$DEST/.ballast-generated" && "$(cat "$DEST/.ballast-generated")" == "$stamp" ]]; then
	exit 0
fi

# Outside the main module: it cannot load before the directory exists.
outside=$(mktemp -d)
json=$(cd "$outside" && GOFLAGS= GOWORK=off "$GO" mod download -json "$MODULE@$VERSION") ||
	die "go mod download $MODULE@$VERSION failed (is the Go module proxy reachable?)"
rmdir "$outside"
dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")
sum=$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
ziphash=$(sed -n 's/^[[:space:]]*"Zip": "\(.*\)",$/\1/p' <<<"$json" | sed 's/\.zip$/.ziphash/')
[[ -d "$dir" ]] || die "go mod download gave no directory for $MODULE@$VERSION: $json"
[[ "$sum" == "$WANT_SUM" ]] || die "go mod download reports $sum for $MODULE@$VERSION, want $WANT_SUM"
[[ ! -f "$ziphash" || "$(cat "$ziphash")" == "$WANT_SUM" ]] || die "$ziphash says $(cat "$ziphash"), want $WANT_SUM"

tmp="$DEST.tmp.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$(dirname "$DEST")"
cp -r "$dir" "$tmp"
chmod -R u+w "$tmp"

# Check the copy itself against the hash (hack/kubernetes/dirhash computes
# go.sum's h1: over the files, as the go command does).
abs_tmp="$(cd "$(dirname "$tmp")" && pwd)/$(basename "$tmp")"
got=$(cd hack/kubernetes/dirhash && GOFLAGS= GOWORK=off "$GO" run . "$abs_tmp" "$MODULE@$VERSION") ||
	die "hashing the copy failed"
[[ "$got" == "$WANT_SUM" ]] || die "the copy of $dir hashes to $got, want $WANT_SUM: the module cache is damaged (go clean -modcache)"

# patch(1) with zero fuzz, or git apply (never fuzzy) where patch is missing
# (the golang container image); git must not see the enclosing repository.
apply_patch() {
	if command -v patch >/dev/null; then
		patch -d "$tmp" -p1 --fuzz=0 --forward --batch --no-backup-if-mismatch -s <"$1"
	else
		(cd "$tmp" && GIT_CEILING_DIRECTORIES="$(dirname "$abs_tmp")" git apply -p1 --whitespace=nowarn) <"$1"
	fi
}
for p in "${PATCHES[@]}"; do
	[[ -f "$p" ]] || die "no patch in hack/kubernetes/patches"
	if ! out=$(apply_patch "$p" 2>&1); then
		echo "$out" >&2
		die "$p does not apply to $MODULE $VERSION with zero fuzz: rebase it (see docs/queue-fix.md)"
	fi
	if find "$tmp" -name '*.rej' -o -name '*.orig' | grep -q .; then
		die "$p left .rej/.orig files"
	fi
done
echo "$stamp" >"$tmp/.ballast-generated"
rm -rf "$DEST"
mv "$tmp" "$DEST"
trap - EXIT
echo "generated $DEST: $MODULE $VERSION ($WANT_SUM) + ${#PATCHES[@]} patch(es)"
