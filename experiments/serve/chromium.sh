#!/usr/bin/env bash
# A Chromium for a machine that has none and no network: @sparticuz/chromium's self-contained headless shell
# (it brings libnss3 and its kin; it needs only glibc), from the npm registry, split to travel in pieces.
#   bash experiments/serve/chromium.sh fetch DIR      here: DIR/part-00, part-01 (chromium.br in 34 MB pieces),
#                                                     DIR/{libs,fonts,swiftshader}.tar.br, the brotli wheel
#   bash experiments/serve/chromium.sh unpack DIR OUT  there: OUT/chromium, OUT/lib and OUT/fonts (pass
#                                                     --library-path OUT/lib --fonts OUT/fonts to browser.py);
#                                                     DIR may have been filled by several calls
# The fonts matter where the machine has no fontconfig setup (/etc/fonts): without them the headless shell
# aborts as soon as a page draws text (SkFontMgr_FontConfigInterface "Not implemented"). SwiftShader is its
# software GL, next to the binary.
set -euo pipefail
VERSION=153.0.0
case "${1:-}" in
fetch)
  dir=${2:?DIR}; mkdir -p "$dir"; tmp=$(mktemp -d)
  curl -sSf -o "$tmp/c.tgz" "https://registry.npmjs.org/@sparticuz/chromium/-/chromium-$VERSION.tgz"
  want=$(curl -sSf "https://registry.npmjs.org/@sparticuz/chromium/$VERSION" | python3 -c "import json,sys; print(json.load(sys.stdin)['dist']['shasum'])")
  echo "$want  $tmp/c.tgz" | sha1sum -c -
  tar xzf "$tmp/c.tgz" -C "$tmp"
  split -b 34M -d "$tmp/package/bin/chromium.br" "$dir/part-"
  cp "$tmp/package/bin/al2023.tar.br" "$dir/libs.tar.br"
  cp "$tmp/package/bin/fonts.tar.br" "$tmp/package/bin/swiftshader.tar.br" "$dir/"
  sha256sum "$tmp/package/bin/chromium.br" | cut -d' ' -f1 > "$dir/chromium.br.sha256"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
    -d "$dir" brotli
  rm -rf "$tmp"; ls -la "$dir" ;;
unpack)
  dir=${2:?DIR}; out=${3:?OUT}; mkdir -p "$out/lib"
  cat "$dir"/part-* > "$out/chromium.br"
  echo "$(cat "$dir/chromium.br.sha256")  $out/chromium.br" | sha256sum -c -
  if command -v brotli > /dev/null; then  # the command-line tool where there is one, else the wheel (Python 3.12)
    brotli -d -f -o "$out/chromium" "$out/chromium.br"
    for t in libs fonts swiftshader; do mkdir -p "$out/$t"; brotli -d -c "$dir/$t.tar.br" | tar x -C "$out/$t"; done
  else
    python3 -m pip install -q --no-index --no-deps --target "$out/py" "$dir"/brotli-*.whl
    PYTHONPATH="$out/py" python3 - "$out" "$dir" <<'PY'
import brotli, io, sys, tarfile
out, src = sys.argv[1], sys.argv[2]
open(f"{out}/chromium", "wb").write(brotli.decompress(open(f"{out}/chromium.br", "rb").read()))
for t in ("libs", "fonts", "swiftshader"):
    tarfile.open(fileobj=io.BytesIO(brotli.decompress(open(f"{src}/{t}.tar.br", "rb").read()))).extractall(f"{out}/{t}")
PY
  fi
  chmod +x "$out/chromium"; rm "$out/chromium.br"; cp "$out"/libs/lib/* "$out/lib/"; cp "$out"/swiftshader/* "$out/"
  cat > "$out/fonts/fonts.conf" <<CONF
<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig><dir>$out/fonts/fonts</dir><cachedir>$out/fonts/cache</cachedir></fontconfig>
CONF
  LD_LIBRARY_PATH="$out/lib" "$out/chromium" --version ;;
*) echo "usage: $0 fetch DIR | unpack DIR OUT" >&2; exit 2 ;;
esac
