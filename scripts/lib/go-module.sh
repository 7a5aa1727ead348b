# Helpers for building Go programs from the Go module proxy (sourced by scripts/k8s-testenv and
# scripts/tofu, scripts/helm). The caller defines log and die.

find_go() {
    if command -v go >/dev/null 2>&1; then
        command -v go
    elif [[ -x /usr/local/go/bin/go ]]; then
        echo /usr/local/go/bin/go
    else
        die "Go is not installed (looked in PATH and /usr/local/go/bin)"
    fi
}

# JSON field of `go mod download -json` output (one field per line).
json_field() { # field
    sed -n "s/^[[:space:]]*\"$1\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p"
}

# go and godebug directives of a go.mod (godebug may be one line or a block).
go_directives() { # go.mod
    awk '
        /^go [0-9]/ { print; next }
        /^godebug[ \t]*\(/ { block = 1 }
        block { print; if ($0 ~ /^\)/) block = 0; next }
        /^godebug[ \t]/ { print }
    ' "$1"
}

# replace directives of a go.mod that point at another module version (not at a local directory),
# one line or a block; printed as single-line `replace` directives.
module_replaces() { # go.mod
    awk '
        /^replace[ \t]*\(/ { block = 1; next }
        block && /^\)/ { block = 0; next }
        block { line = $0 }
        !block && /^replace[ \t]/ { line = $0; sub(/^replace[ \t]+/, "", line) }
        line != "" {
            split(line, side, "=>")
            target = side[2]
            gsub(/^[ \t]+|[ \t]+$/, "", target)
            if (target !~ /^\.{0,2}\//) { gsub(/^[ \t]+/, "", line); print "replace " line }
            line = ""
        }
    ' "$1"
}
