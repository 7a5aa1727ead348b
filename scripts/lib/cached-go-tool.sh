# One Go program built from the Go module proxy into a per-machine cache keyed by its version
# (sourced by scripts/tofu and scripts/helm, after scripts/lib/go-module.sh). The caller defines
# log, die, usage and:
#   TOOL        the program's name (the binary's, and the stamp's key)
#   VERSION     the pinned version
#   CACHE       the cache directory of that version (the binary goes to $CACHE/bin/$TOOL)
#   JOBS        how many packages Go builds in parallel
#   STAMP_KEY   (optional, default $TOOL) the name the stamp gives the version: $CACHE/stamp
#               holds "$STAMP_KEY=$VERSION" once the build is complete
#   build_tool  a function run in a fresh work directory (its first argument) that leaves the
#               binary at out/$TOOL; GO is set, and CGO is off.

tool_bin() { echo "$CACHE/bin/$TOOL"; }

tool_is_built() {
    [[ -f $CACHE/stamp && "$(cat "$CACHE/stamp")" == "${STAMP_KEY:-$TOOL}=$VERSION" && -x $(tool_bin) ]]
}

# Build once (one build at a time per cache, others wait for it); print the binary's path.
tool_build() {
    if tool_is_built; then
        tool_bin
        return
    fi
    local root
    root=$(dirname "$CACHE")
    mkdir -p "$root"
    exec 9>"$root/.lock"
    if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
        log "another build is running; waiting for it"
        flock 9
    fi
    if tool_is_built; then
        tool_bin
        return
    fi
    GO=$(find_go)
    export GO CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off
    export GOFLAGS="-p=$JOBS -trimpath -buildvcs=false"
    local work started
    started=$SECONDS
    mkdir -p "$CACHE"
    work=$(mktemp -d "$CACHE/.work.XXXXXX")
    # shellcheck disable=SC2064  # expand now: the path is fixed
    trap "rm -rf '$work'" EXIT
    log "building $TOOL $VERSION into $CACHE with $("$GO" env GOVERSION)"
    (cd "$work" && build_tool "$work")
    [[ -x $work/out/$TOOL ]] || die "the build produced no $TOOL"
    mkdir -p "$CACHE/bin"
    mv -f "$work/out/$TOOL" "$(tool_bin)" # a rename within the cache: never half-written
    printf '%s=%s\n' "${STAMP_KEY:-$TOOL}" "$VERSION" >"$CACHE/stamp"
    tool_is_built || die "the build finished but $(tool_bin) is missing"
    log "built in $((SECONDS - started))s: $(du -h "$(tool_bin)" | cut -f1) at $(tool_bin)"
    tool_bin
}

# build | path | ARGS... (run the program, built first if needed).
tool_main() {
    case ${1:-} in
    build)
        (($# == 1)) || die "usage: scripts/$TOOL build"
        tool_build
        ;;
    path)
        (($# == 1)) || die "usage: scripts/$TOOL path"
        tool_is_built || die "$TOOL $VERSION is not built in $CACHE: run scripts/$TOOL build"
        tool_bin
        ;;
    "" | -h | --help | help)
        usage
        ;;
    *)
        local bin
        bin=$(tool_build)
        exec "$bin" "$@"
        ;;
    esac
}
