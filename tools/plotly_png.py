"""Give every plotly figure in committed notebooks a static PNG, so GitHub shows it.

    python tools/plotly_png.py index.ipynb nbs/experiments/004_self_speculation.ipynb

GitHub's notebook viewer runs no JavaScript and shows one representation per output, preferring
`text/html` to `image/png` (nbconvert's order). A figure executed with plotly's
`plotly_mimetype+notebook_connected` renderer holds its JSON (`application/vnd.plotly.v1+json`) and an
HTML view whose script loads plotly.js from a CDN: on GitHub the script is stripped and the figure is blank.
So each output holding plotly JSON gets:

- `image/png`, rendered from that JSON by kaleido (a headless Chromium), at the figure's layout
  width/height (else 760x450, 450 being plotly.js's default height), scale 1 to keep files small;
- its `text/html` dropped, so the PNG is what GitHub (and nbviewer) show;
- its plotly JSON kept: JupyterLab and VS Code still draw the interactive figure from it.

Notebooks are post-processed in place, never executed. The PNG carries a fingerprint of what it was
drawn from (a PNG `tEXt` chunk: SHA-256 of the figure JSON and size), so a second run re-renders only
figures whose JSON changed: unchanged notebooks keep identical bytes, whatever machine or fonts. After a
notebook is executed again, `add_pngs(nb, previous=old_nb)` reuses the PNGs of unchanged figures.
kaleido finds Chromium through BROWSER_PATH; set here from `chromium` on PATH
(tools/install_browser.sh installs Debian's).
"""
from __future__ import annotations

import base64, hashlib, json, os, shutil, struct, sys, warnings, zlib
from pathlib import Path

PLOTLY = "application/vnd.plotly.v1+json"
DEFAULT_SIZE = (760, 450)
KEY = b"eelab-figure-sha256"                      # tEXt keyword of the fingerprint
_SERVER: list = []                                # the running kaleido server's stop, once started


def use_chromium() -> str:
    "The Chromium kaleido will drive (sets BROWSER_PATH); a clear error naming the fix when there is none."
    path = os.environ.get("BROWSER_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path or not Path(path).exists():
        raise RuntimeError("plotly_png: no Chromium for kaleido; run tools/install_browser.sh "
                           "(Debian package 'chromium') or set BROWSER_PATH to a Chromium/Chrome binary")
    os.environ["BROWSER_PATH"] = path
    return path


def fingerprint(fig: dict, width: int, height: int) -> str:
    "SHA-256 of the figure JSON (canonical: sorted keys) and the size it is drawn at."
    blob = json.dumps([fig, width, height], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def png_text(png: bytes, key: bytes) -> str | None:
    "The value of the PNG's `tEXt` chunk named `key`, None if it has none."
    pos = 8                                                           # after the signature
    while pos + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        body = png[pos + 8:pos + 8 + length]
        if kind == b"tEXt" and body.startswith(key + b"\0"): return body[len(key) + 1:].decode("latin-1")
        pos += 12 + length                                            # length, type, body, crc
    return None


def with_text(png: bytes, key: bytes, value: str) -> bytes:
    "The PNG with a `tEXt` chunk `key`=`value` inserted after its IHDR chunk (signature 8 + IHDR 25 bytes)."
    body = b"tEXt" + key + b"\0" + value.encode("latin-1")
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    return png[:33] + chunk + png[33:]


def render(fig: dict, width: int, height: int, mark: str) -> str:
    "The figure as a base64 PNG carrying its fingerprint (one Chromium for all: see `close_browser`)."
    import kaleido, plotly.io as pio
    if not _SERVER:
        kaleido.start_sync_server(silence_warnings=True)
        _SERVER.append(kaleido.stop_sync_server)
    with warnings.catch_warnings():                       # plotly's kaleido options do not apply to a server
        warnings.filterwarnings("ignore", "The kopts argument is ignored")
        png = pio.to_image(fig, format="png", width=width, height=height, scale=1)
    return base64.b64encode(with_text(png, KEY, mark)).decode()


def close_browser():
    "Stop the Chromium `render` started, if any."
    while _SERVER: _SERVER.pop()(silence_warnings=True)


def plotly_outputs(nb: dict):
    "The outputs of `nb` holding plotly JSON."
    for cell in nb.get("cells", []):
        yield from (out for out in cell.get("outputs", []) if PLOTLY in out.get("data", {}))


def size(fig: dict) -> tuple[int, int]:
    "Width and height to draw at: the figure's layout, else the default."
    layout = fig.get("layout", {})
    return layout.get("width") or DEFAULT_SIZE[0], layout.get("height") or DEFAULT_SIZE[1]


def pngs_by_fingerprint(nb: dict) -> dict[str, str]:
    "The PNGs `nb`'s plotly outputs already carry, by the fingerprint each was drawn from."
    pngs = {}
    for out in plotly_outputs(nb):
        png = out["data"].get("image/png")
        if png: pngs[png_text(base64.b64decode("".join(png)), KEY)] = "".join(png)
    return pngs


def add_pngs(nb: dict, previous: dict | None = None) -> int:
    """Give every output holding plotly JSON an up-to-date `image/png` and drop its `text/html`; how many.
    A PNG drawn from the same JSON, in `nb` or in `previous` (the notebook before it was executed
    again), is reused: only new or changed figures are drawn."""
    known = pngs_by_fingerprint(previous or {}) | pngs_by_fingerprint(nb)
    count = 0
    for out in plotly_outputs(nb):
        data = out["data"]
        fig, (width, height) = data[PLOTLY], size(data[PLOTLY])
        mark = fingerprint(fig, width, height)
        if mark not in known:
            use_chromium()
            known[mark] = render(fig, width, height, mark)
        data["image/png"] = known[mark]
        data.pop("text/html", None)
        count += 1
    return count


def write_nb(nb: dict, path: Path):
    "As nbdev writes notebooks (nbdev_clean leaves the file as it is); untouched when nothing changed."
    text = json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    if text != path.read_text(encoding="utf-8"): path.write_text(text, encoding="utf-8")


def main(argv: list[str]) -> int:
    if not argv or any(a.startswith("-") for a in argv):
        print(__doc__)
        return 2
    try:
        for arg in argv:
            path = Path(arg)
            if not path.exists(): raise SystemExit(f"{arg}: no such notebook")
            nb = json.loads(path.read_text(encoding="utf-8"))
            count = add_pngs(nb)
            write_nb(nb, path)
            print(f"{arg}: {count} plotly figure(s) with a PNG", flush=True)
    except RuntimeError as e:
        raise SystemExit(str(e))
    finally:
        close_browser()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
