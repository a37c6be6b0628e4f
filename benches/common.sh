# Shared by the whole-process benchmark scripts (sourced, not run). Expects HERE and REPO.

# require_tools SCRIPT HINT TOOL...: exit 2 naming the first missing tool.
require_tools() {
    local script=$1 hint=$2 tool
    shift 2
    for tool in "$@"; do
        command -v "$tool" >/dev/null || {
            echo "$script: '$tool' is missing ($hint)" >&2
            exit 2
        }
    done
}

# hashsweep_binary SCRIPT: set BIN to $HASHSWEEP, or build the release binary.
hashsweep_binary() {
    if [[ -n ${HASHSWEEP:-} ]]; then
        BIN=$HASHSWEEP
    else
        echo "== cargo build --release" >&2
        (cd "$REPO" && cargo build --release --quiet)
        BIN=$REPO/target/release/hashsweep
    fi
    [[ -x $BIN ]] || { echo "$1: no binary at $BIN" >&2; exit 2; }
}

# mock_binary SCRIPT: set MOCK to $MOCK_API, or build the release `mock-api` of crates/mock
# (the MetaDefender stand-in, which is not part of hashsweep itself).
mock_binary() {
    if [[ -n ${MOCK_API:-} ]]; then
        MOCK=$MOCK_API
    else
        echo "== cargo build --release -p hashsweep-mock --bin mock-api" >&2
        (cd "$REPO" && cargo build --release --quiet -p hashsweep-mock --bin mock-api)
        MOCK=$REPO/target/release/mock-api
    fi
    [[ -x $MOCK ]] || { echo "$1: no mock-api binary at $MOCK" >&2; exit 2; }
}
