#!/bin/sh
# clusterbins.sh [DIR]: build the real vault and nomad binaries the cluster
# tests and the demo run, from their Go modules, into DIR/<name>-<version>/.
#
# Neither is packaged by Debian, and `go install module@version` refuses both
# (their go.mod replaces point at sibling folders missing from the module
# zip). The recipe (../shared/reference/lab-notes.md): download the module,
# copy it somewhere writable, drop the ./ replaces, build with -mod=mod.
# Vault builds with -tags minimal (core plugins: KV, token, JWT, ...).
#
# Cached by version: a second run only checks the binaries are there. The Go
# build cache for these builds lives beside them, so a version bump reuses
# what it can. Prints DIR on stdout; the binaries are DIR/vault-V/vault and
# DIR/nomad-V/nomad, with DIR/bin/{vault,nomad} symlinks to the current ones.
set -eu

DIR=${1:-/var/cache/bootstrapd-test/cluster}
VAULT_VERSION=${VAULT_VERSION:-v1.21.0}
NOMAD_VERSION=${NOMAD_VERSION:-v1.11.3}
# Once its ./api replace is dropped, nomad v1.11.3 asks for an ancient
# nomad/api pseudo-version that no longer builds with it; this one does.
NOMAD_API=github.com/hashicorp/nomad/api@v0.0.0-20260907080526-08ef8f3d26da

log() { echo "clusterbins: $*" >&2; }

mkdir -p "$DIR/bin"
exec 9>"$DIR/.lock"
flock 9
export GOCACHE="$DIR/gocache" GOFLAGS=-mod=mod

# build NAME MODULE VERSION [go build args...]
build() {
	name=$1 module=$2 version=$3
	shift 3
	out=$DIR/$name-$version
	if [ -x "$out/$name" ]; then
		ln -sfn "$out/$name" "$DIR/bin/$name"
		return
	fi
	log "building $name $version (first run only; vault takes ~15 min on 2 cores)"
	src=$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -n "$src" ] || {
		log "go mod download $module@$version gave no folder"
		exit 1
	}
	work=$DIR/src-$name-$version
	rm -rf "$work"
	cp -R "$src" "$work"
	chmod -R u+w "$work"
	(
		cd "$work"
		# replace lines whose target is a sibling folder: "[replace] OLD [V] => ./X"
		awk '/=> *\.\// { print ($1 == "replace") ? $2 : $1 }' go.mod | while read -r r; do
			go mod edit -dropreplace="$r"
		done
		if [ "$name" = nomad ]; then
			go get "$NOMAD_API"
		fi
		mkdir -p "$out.tmp"
		CGO_ENABLED=0 go build -trimpath "$@" -o "$out.tmp/$name" .
	)
	rm -rf "$out" "$work"
	mv "$out.tmp" "$out"
	ln -sfn "$out/$name" "$DIR/bin/$name"
	log "built $out/$name"
}

build nomad github.com/hashicorp/nomad "$NOMAD_VERSION"
build vault github.com/hashicorp/vault "$VAULT_VERSION" -tags minimal
echo "$DIR"
