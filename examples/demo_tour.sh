#!/usr/bin/env bash
# A tour of the `railyard` command on examples/document_review.py: what `./dev demo` runs.
#
#   bash examples/demo_tour.sh [DIR]
#
# Needs `railyard` on PATH (`pip install 'railyard-graph[ui]'`; `./dev demo` makes
# .venv-demo and puts its bin/ first). The run goes to DIR/demo.db (DIR is relative to
# the repository, `.demo` unless given), a SQLite file made afresh each time. Each command
# is printed, as `$ command`, before it runs; the tour stops if one exits unexpectedly.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${1:-.demo}
graph=examples.document_review:review
if ! command -v railyard >/dev/null; then
  echo "demo_tour: no \`railyard\` command on PATH: run ./dev demo, or pip install 'railyard-graph[ui]'" >&2
  exit 1
fi
mkdir -p "$dir"
rm -f "$dir/demo.db" "$dir/demo.db-wal" "$dir/demo.db-shm"
[ -e "$dir/.gitignore" ] || echo '*' >"$dir/.gitignore" # git leaves the demo's files alone

# say LINE...: a note for the reader, after a blank line.
say() {
  echo
  printf '# %s\n' "$@"
}

# quoted WORD...: the words as a reader would type them, quoted where the shell needs it.
quoted() {
  local word line=""
  for word in "$@"; do
    if [[ ! $word =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      word="'${word//\'/\'\\\'\'}'"
    fi
    line+="${line:+ }$word"
  done
  printf '%s' "$line"
}

# step STATUS COMMAND...: print `$ COMMAND`, run it, and stop the tour unless it exits with STATUS.
step() {
  local expected=$1 status=0
  shift
  printf '$ %s\n' "$(quoted "$@")"
  "$@" || status=$?
  if [ "$status" != "$expected" ]; then
    echo "demo_tour: \`$(quoted "$@")\` exited with status $status, not $expected" >&2
    exit 1
  fi
}

documents=(examples/documents/*.txt)
echo "railyard demo: review ${#documents[@]} documents, with a person's approval in the middle"

say "Every command reads and writes one SQLite file: no server."
printf '$ export RAILYARD_STORE=sqlite:%s/demo.db\n' "$dir"
export RAILYARD_STORE="sqlite:$dir/demo.db"

say "Fan out over examples/documents/*.txt and review each file, 3 at a time (the summariser" \
  "times out once: the step is retried), join the reviews, then wait for a person (exit status 3):"
step 3 railyard run "$graph" --run-id review-1

say "The run is stored as suspended; no process waits for it:"
step 0 railyard runs

say "Dana answers, from any process; the payload is checked against Approval first:"
step 0 railyard signal review-1 approval '{"approved": true, "by": "Dana", "note": "fix the TODO first"}'

say "The run carries on from the step that waited, to its end:"
step 0 railyard resume review-1 --graph "$graph"

say "Every step, attempt and state is in the run's log, the failed attempt too:"
step 0 railyard show review-1

say "To type these yourself: . .venv-demo/bin/activate, then the export above." \
  "The inspector shows the same runs in the browser, the graph drawn, with a form to answer a waiting run" \
  "(given the graph, it can resume and fork its runs too):"
printf '  railyard ui %s --store sqlite:%s/demo.db\n' "$graph" "$dir"
