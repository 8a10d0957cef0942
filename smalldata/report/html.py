"""The report page: figures as embedded PNGs, a summary table, and a load check for browsers.

The page's script counts the images that decoded (``naturalWidth > 0``) once the page has
loaded and writes the count into ``<body data-images-loaded="k" data-images-total="n">``,
so a headless browser's DOM dump tells whether every figure shows.
"""
from __future__ import annotations

import base64
import datetime
import html
import io
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from smalldata.errors import SmallDataError
from smalldata.report.figures import FIGURES, ReportSkip

log = logging.getLogger(__name__)

_STYLE = """body{font-family:sans-serif;margin:2em;max-width:60em}figure{margin:1.5em 0}
img{max-width:100%;border:1px solid #ccc}table{border-collapse:collapse}td,th{padding:2px 8px;
border-bottom:1px solid #ddd;text-align:left}.skip{color:#a60}"""
_SCRIPT = """window.addEventListener('load',function(){var im=document.images,ok=0;
for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0){ok++;}}
document.body.setAttribute('data-images-loaded',ok);document.body.setAttribute('data-images-total',im.length);});"""


def png_data_uri(fig) -> str:
    """A matplotlib figure as a ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _summary(ana) -> List[tuple]:
    rows = [("run", ana.run), ("proposal", ana.proposal), ("frames", len(ana)),
            ("trains", len(np.unique(ana["trainId"]))), ("output", str(ana.path))]
    if ana.scan_name:
        values = ana.scan_values
        rows.append(("scan", f"{ana.scan_name}: {len(values)} values, {values.min():g} .. {values.max():g} "
                             f"{ana.units(ana.scan_name)}"))
    if "delay/valid" in ana:
        rows.append(("frames with a valid delay", int(np.count_nonzero(ana["delay/valid"]))))
    return rows


def write_report(ana, path: Optional[os.PathLike] = None) -> Path:
    """Write the report of the session's run as one HTML file.

    Parameters
    ----------
    ana : SmallDataAna
    path : path, optional
        Default ``r0614_report.html`` beside the output.

    Returns
    -------
    Path
        The written page.
    """
    path = Path(path) if path is not None else ana.path.with_name(f"{ana.path.stem}_report.html")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Run {ana.run} report</title>",
             f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>",
             f"<h1>Run {ana.run} (proposal {ana.proposal})</h1>",
             "<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                                 for k, v in _summary(ana)) + "</table>"]
    shown: Dict[str, str] = {}
    for title, draw in FIGURES:
        try:
            fig, caption = draw(ana)
        except ReportSkip as exc:
            parts.append(f"<h2>{html.escape(title)}</h2><p class='skip'>not shown: {html.escape(str(exc))}</p>")
            log.info("report: %s not shown: %s", title, exc)
            continue
        uri = png_data_uri(fig)
        shown[title] = uri
        parts.append(f"<figure><h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='{uri}'>"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<p><small>smalldata {html.escape(str(ana.meta.get('version', '')))}, {stamp}</small></p>"
                 "</body></html>")
    try:
        path.write_text("".join(parts), encoding="utf-8")
    except OSError as exc:
        raise SmallDataError(f"cannot write the report {path}: {exc.strerror}; give another path") from None
    log.info("report of run %d: %d figures -> %s", ana.run, len(shown), path)
    return path


class ReportMixin:
    """``report`` of ``SmallDataAna``."""

    def report(self, path: Optional[os.PathLike] = None) -> Path:
        """Write the run report (one self-contained HTML page, :func:`write_report`); returns its path."""
        return write_report(self, path)
