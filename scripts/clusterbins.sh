#!/bin/sh
# clusterbins.sh [DIR]: build the real vault and nomad binaries the cluster
# tests and the demo run, from their Go modules, into DIR/<name>-<version>/.
#
# Only open-source releases: Nomad 1.6.x and Vault 1.14.1 are MPL-2.0; Nomad
# from 1.7.0 and Vault from 1.15 are under the Business Source License, which
# the project does not build, ship or test against. Before building, each
# module's LICENSE is read and anything that is not an open-source licence is
# refused, so a version bump cannot drift back.
#
# Neither is packaged by Debian, and `go install module@version` refuses both
# (their go.mod replaces point at sibling folders missing from the module
# zip). The recipe (../shared/reference/lab-notes.md): download the module,
# copy it somewhere writable, drop the ./ replaces, pin the api or sdk module
# to one that builds with that release, build with -mod=mod.
#
# Cached by version: a second run only checks the binaries are there. The Go
# build cache for these builds lives beside them, so a version bump reuses
# what it can. Prints DIR on stdout; the binaries are DIR/vault-V/vault and
# DIR/nomad-V/nomad, with DIR/bin/{vault,nomad} symlinks to the current ones.
#
# NOMAD_MODULE/VAULT_MODULE and the *_VERSION variables choose other modules
# (the licence guard's test builds a fake one); ONLY=nomad|vault builds one.
set -eu

DIR=${1:-/var/cache/bootstrapd-test/cluster}
NOMAD_MODULE=${NOMAD_MODULE:-github.com/hashicorp/nomad}
NOMAD_VERSION=${NOMAD_VERSION:-v1.6.1}
VAULT_MODULE=${VAULT_MODULE:-github.com/hashicorp/vault}
VAULT_VERSION=${VAULT_VERSION:-v1.14.1}
# Once its ./api replace is dropped, nomad v1.6.1 asks for a January 2023
# nomad/api that lacks what 1.6.1 uses (api.WorkloadIdentity, ...); this is
# the api of the v1.6.1 release.
NOMAD_PIN=${NOMAD_PIN-github.com/hashicorp/nomad/api@v0.0.0-20230721134942-515895c7690c}
# Vault and its sdk are never tagged on one commit; this is the sdk at the
# v1.14.1 tag's commit (the go.mod's May 2023 sdk does not build with it).
VAULT_PIN=${VAULT_PIN-github.com/hashicorp/vault/sdk@v0.9.2-0.20230721171514-bf23fe8636b0}

log() { echo "clusterbins: $*" >&2; }

mkdir -p "$DIR/bin"
exec 9>"$DIR/.lock"
flock 9
export GOCACHE="$DIR/gocache" GOFLAGS=-mod=mod

# licence_ok FILE: the module's LICENSE is an open-source licence we accept.
licence_ok() {
	[ -f "$1" ] || return 1
	grep -qi 'Business Source License' "$1" && return 1
	grep -qiE 'Mozilla Public License,? [Vv]ersion 2\.0|Apache License|MIT License|BSD [23]-Clause' "$1"
}

# build NAME MODULE VERSION PIN CGO [go build args...]
build() {
	name=$1 module=$2 version=$3 pin=$4 cgo=$5
	shift 5
	out=$DIR/$name-$version
	if [ -x "$out/$name" ]; then
		ln -sfn "$out/$name" "$DIR/bin/$name"
		return
	fi
	src=$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -n "$src" ] || {
		log "go mod download $module@$version gave no folder"
		exit 1
	}
	if ! licence_ok "$src/LICENSE"; then
		first=$(grep -m1 . "$src/LICENSE" 2>/dev/null || echo "(no LICENSE file)")
		log "refusing $module@$version: $src/LICENSE is not an open-source licence we accept: $first"
		exit 3
	fi
	log "building $name $version (first run only; both take about 11 min on 2 cores)"
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
		if [ -n "$pin" ]; then
			go get "$pin"
		fi
		mkdir -p "$out.tmp"
		CGO_ENABLED=$cgo go build -trimpath "$@" -o "$out.tmp/$name" .
	)
	rm -rf "$out" "$work"
	mv "$out.tmp" "$out"
	ln -sfn "$out/$name" "$DIR/bin/$name"
	log "built $out/$name"
}

# Nomad needs cgo: runc's libcontainer/nsenter has only cgo files.
case ${ONLY:-} in nomad | "") build nomad "$NOMAD_MODULE" "$NOMAD_VERSION" "$NOMAD_PIN" 1 ;; esac
case ${ONLY:-} in vault | "") build vault "$VAULT_MODULE" "$VAULT_VERSION" "$VAULT_PIN" 0 ;; esac
echo "$DIR"
