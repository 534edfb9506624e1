"""`make plots`: DVC's plots page (`dvc plots show`) that renders with no network.

DVC's page loads vega, vega-lite and vega-embed from a CDN, so offline only its images appear. This gives
`dvc plots show` an HTML template with the three libraries inlined, from the vl-convert-python package
(which ships them), and writes the page into a temporary folder that replaces `dvc_plots/` when complete.
A plot file that is missing is named in one line before DVC runs (DVC would say only that some failed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from logitlab import config, io
from logitlab.cli import run_guarded
from logitlab.errors import LogitlabError

OUT_DIR = "dvc_plots"
# What DVC's plot divs call, made global (vl-convert's bundle is an ES module otherwise).
GLOBALS = "window.vegaEmbed = vegaEmbed; window.vega = vega; window.vegaLite = vegaLite;"
HEAD = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>logitlab: DVC plots</title>
<style>body { font-family: sans-serif; } table { border-spacing: 15px; }</style>
<script type="text/javascript">
"""
TAIL = """
</script>
</head>
<body>
<h1>logitlab: the pipeline's plots</h1>
{plot_divs}
</body>
</html>
"""


def plot_files(plots: list[Any]) -> Iterator[str]:
    """Every file the dvc.yaml `plots` section reads: image paths, and the data files of each plot's `y`."""
    for plot in plots:
        if isinstance(plot, str):
            yield plot
            continue
        for definition in plot.values():
            yield from definition["y"]


def template() -> str:
    """DVC's page template with vega, vega-lite and vega-embed inlined (no `{scripts}`: no CDN tags)."""
    import vl_convert

    bundle = vl_convert.javascript_bundle(GLOBALS)
    return HEAD + bundle.replace("</script", "<\\/script") + TAIL


def write(root: Path) -> Path:
    """`dvc plots show` with the offline template into root/dvc_plots; the page's path."""
    from dvc.cli import main as dvc

    from logitlab import pipeline

    missing = [path for path in dict.fromkeys(plot_files(pipeline.PLOTS)) if not (root / path).exists()]
    if missing:
        raise LogitlabError(f"plot file '{missing[0]}' is missing; run `make repro` first")
    out = root / OUT_DIR
    staging = Path(tempfile.mkdtemp(prefix=f".{OUT_DIR}.", dir=root))
    try:
        page, html = staging / "page", staging / "template.html"
        io.write_text(html, template())
        code = dvc(["--cd", str(root), "plots", "show", "--quiet", "--html-template", str(html), "-o", str(page)])
        if code != 0:
            raise LogitlabError(f"`dvc plots show` exited {code} (see above)")
        previous = out.with_name(f".{OUT_DIR}.previous")
        shutil.rmtree(previous, ignore_errors=True)
        if out.exists():
            os.rename(out, previous)
        os.rename(page, out)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "index.html"


def main() -> None:
    root = config.project_root()
    run_guarded(lambda: print(f"wrote {write(root).relative_to(root)}: open it in a browser, no network needed"))


if __name__ == "__main__":
    main()
