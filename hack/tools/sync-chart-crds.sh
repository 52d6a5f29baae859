#!/usr/bin/env bash
# Copy the generated CRDs (crds/*.yaml) into the Helm chart, which cannot read files outside itself.
#   hack/tools/sync-chart-crds.sh          copy (run after `make crds`)
#   hack/tools/sync-chart-crds.sh --check  exit 1 when the chart's copy differs from crds/
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
src="$root/crds"
dst="$root/charts/promptalias/files/crds"

if [[ "${1:-}" == "--check" ]]; then
  if ! diff -r -q "$src" "$dst" >/dev/null 2>&1; then
    echo "charts/promptalias/files/crds differs from crds/:" >&2
    diff -r -q "$src" "$dst" >&2 || true
    echo "run: hack/tools/sync-chart-crds.sh" >&2
    exit 1
  fi
  exit 0
fi

shopt -s nullglob
files=("$src"/*.yaml)
if (( ${#files[@]} == 0 )); then
  echo "no CRDs in $src; run \`make crds\` first" >&2
  exit 1
fi
mkdir -p "$dst"
rm -f "$dst"/*.yaml
cp "${files[@]}" "$dst"/
echo "copied ${#files[@]} CRD file(s) from crds/ to charts/promptalias/files/crds/"
