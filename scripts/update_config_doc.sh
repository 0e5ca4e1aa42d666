#!/bin/sh
# Regenerates docs/config.md from the parser's field table (`t4g config doc`), keeping the header.
# Usage: scripts/update_config_doc.sh [path/to/t4g]   (default build/bin/t4g)
set -eu
T4G=${1:-build/bin/t4g}
cd "$(dirname "$0")/.."
{
  sed -n '1,/^| key |/p' docs/config.md | sed '$d'
  "$T4G" config doc
} > docs/config.md.tmp
mv docs/config.md.tmp docs/config.md
