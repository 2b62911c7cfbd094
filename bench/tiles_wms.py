"""WMS GetMap 256x256 PNG throughput: this server (Mapnik, gunicorn 2 workers) vs MapServer 8
(Debian cgi-mapserver as FastCGI under lighttpd, 2 processes), same PostGIS layer, same style.

Run: .venv/bin/python bench/tiles_wms.py [--seconds S]
Needs: apt-get install cgi-mapserver lighttpd wrk.
Both draw the demo parcels (6.6k polygons, from ``geom_3857``) as 1-pixel brown outlines on a
transparent background (our ``outline`` style), for the web-mercator tiles covering the parcels
at zooms 15-17; wrk cycles through the same bounding boxes for both, alternating A/B/A/B.
Two output formats, the same on both sides:
  image/png               32-bit RGBA PNG (MapServer AGG/PNG IMAGEMODE RGBA; Mapnik png32, zlib level 1)
  image/png; mode=8bit    8-bit palette PNG (MapServer AGG/PNG8, quantised; Mapnik png8, zlib level 1)
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import requests
from tiles_common import (
    backend_cpu,
    backend_cpu_since,
    demo_database,
    demo_tiles,
    free_port,
    gunicorn,
    process_tree_cpu,
    wait_http,
    wrk,
)

MAPFILE = """MAP
  NAME "bench"
  STATUS ON
  SIZE 256 256
  EXTENT -20037508 -20037508 20037508 20037508
  UNITS METERS
  IMAGECOLOR 255 255 255
  PROJECTION "init=epsg:3857" END
  OUTPUTFORMAT
    NAME "png"
    DRIVER AGG/PNG
    MIMETYPE "image/png"
    IMAGEMODE RGBA
    EXTENSION "png"
    TRANSPARENT ON
  END
  OUTPUTFORMAT
    NAME "png8"
    DRIVER AGG/PNG8
    MIMETYPE "image/png; mode=8bit"
    IMAGEMODE RGBA
    EXTENSION "png"
    TRANSPARENT ON
  END
  WEB
    METADATA
      "wms_title" "bench"
      "wms_onlineresource" "http://127.0.0.1/mapserv?"
      "wms_srs" "EPSG:3857"
      "wms_enable_request" "*"
    END
  END
  LAYER
    NAME "parcels"
    TYPE POLYGON
    STATUS ON
    CONNECTIONTYPE POSTGIS
    CONNECTION "host={host} port={port} dbname={db} user={user}"
    DATA "geom_3857 from (select id, geom_3857 from public.parcel where end_lifespan is null) as t
          using unique id using srid=3857"
    PROCESSING "CLOSE_CONNECTION=DEFER"
    PROJECTION "init=epsg:3857" END
    METADATA "wms_title" "parcels" END
    CLASS
      STYLE OUTLINECOLOR 160 82 45 WIDTH 1.0 END
    END
  END
END
"""

LIGHTTPD = """server.modules = ("mod_fastcgi")
server.document-root = "{root}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{root}/error.log"
fastcgi.server = ( "/mapserv" => ((
  "bin-path" => "/usr/bin/mapserv",
  "socket" => "{root}/mapserv.sock",
  "max-procs" => 2,
  "bin-environment" => ( "MAPSERVER_CONFIG_FILE" => "{root}/mapserver.conf" ),
  "check-local" => "disable"
)))
"""


@contextmanager
def mapserver(url: str):
    from sqlalchemy.engine import make_url

    u = make_url(url)
    with tempfile.TemporaryDirectory() as root:
        Path(root, "bench.map").write_text(MAPFILE.format(host=u.host, port=u.port, db=u.database, user=u.username))
        # MapServer 8 reads a config file; its ENV section names the mapfile
        config = f'CONFIG\n  ENV\n    MS_MAPFILE "{root}/bench.map"\n  END\nEND\n'
        Path(root, "mapserver.conf").write_text(config)
        port = free_port()
        Path(root, "lighttpd.conf").write_text(LIGHTTPD.format(root=root, port=port))
        proc = subprocess.Popen(["lighttpd", "-D", "-f", str(Path(root, "lighttpd.conf"))],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}/mapserv"
        try:
            wait_http(base + "?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.3.0")
            yield base, proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=20)


FORMATS = {"image/png": "image/png", "image/png; mode=8bit": "image/png;%20mode%3D8bit"}


def getmap_urls(base: str, boxes, style: str | None, image_format: str = "image/png") -> list[str]:
    urls = []
    for b in boxes:
        q = (f"SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&LAYERS=parcels&CRS=EPSG:3857&WIDTH=256&HEIGHT=256"
             f"&FORMAT={FORMATS[image_format]}&TRANSPARENT=TRUE&BBOX={b[0]!r},{b[1]!r},{b[2]!r},{b[3]!r}")
        q += f"&STYLES={style}" if style is not None else "&STYLES="
        urls.append(f"{base}?{q}")
    return urls


def check_png(url: str, palette: bool) -> int:
    resp = requests.get(url, timeout=60)
    assert resp.status_code == 200 and resp.content[:8] == b"\x89PNG\r\n\x1a\n", (url, resp.content[:300])
    color_type = resp.content[25]  # IHDR: 3 = palette, 6 = RGBA
    assert color_type == (3 if palette else 6), (url, color_type)
    return len(resp.content)


def compare(db_url: str, ours: str, our_pid: int, theirs: str, ms_pid: int, boxes, image_format: str,
            seconds: int) -> dict:
    """Throughput and server CPU per map of both servers for one output format (A/B/A/B)."""
    urls = {"ours": getmap_urls(f"{ours}/wms", boxes, "outline", image_format),
            "mapserver": getmap_urls(theirs, boxes, None, image_format)}
    palette = image_format != "image/png"
    size = {k: sum(check_png(u, palette) for u in v) / len(boxes) / 1024 for k, v in urls.items()}
    rps = {"ours": [], "mapserver": []}
    cpu = {"ours": [0.0, 0.0, 0], "mapserver": [0.0, 0.0, 0]}
    pids = {"ours": our_pid, "mapserver": ms_pid}
    for _ in range(2):
        for name in ("mapserver", "ours"):
            before, before_db = process_tree_cpu(pids[name]), backend_cpu(db_url)
            rps[name].append(wrk(urls[name], seconds=seconds))
            cpu[name][0] += process_tree_cpu(pids[name]) - before
            cpu[name][1] += backend_cpu_since(db_url, before_db)
            cpu[name][2] += wrk.last_requests
    return {"rps": rps, "size": size, "cpu_ms": {k: v[0] / v[2] * 1000 for k, v in cpu.items()},
            "db_ms": {k: v[1] / v[2] * 1000 for k, v in cpu.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    from tiles.tms import web_tile_bounds

    results = {}
    with demo_database() as (url, engine), tempfile.TemporaryDirectory() as var_dir:
        boxes = [web_tile_bounds(t.z, t.x, t.y) for t in demo_tiles(engine, (15, 16, 17))]
        with gunicorn(url, Path(var_dir), workers=2) as (ours, our_pid), mapserver(url) as (theirs, ms_pid):
            for image_format in FORMATS:
                results[image_format] = compare(url, ours, our_pid, theirs, ms_pid, boxes, image_format,
                                                args.seconds)
    print(f"GetMap 256x256, {len(boxes)} bboxes (z15-17 tiles over 6.6k parcels), wrk 2 threads 4 connections")
    for image_format, r in results.items():
        ours_rps, ms_rps = (sum(v) / len(v) for v in (r["rps"]["ours"], r["rps"]["mapserver"]))
        kind = "32-bit RGBA PNG" if image_format == "image/png" else "8-bit palette PNG"
        print(f"FORMAT={image_format} ({kind} on both sides)")
        print(f"  MapServer 8 FastCGI x2 (baseline): {ms_rps:7.1f} maps/s  runs {r['rps']['mapserver']}  "
              f"mean PNG {r['size']['mapserver']:.1f} KiB")
        print(f"  this server, Mapnik, gunicorn x2 : {ours_rps:7.1f} maps/s  runs {r['rps']['ours']}  "
              f"mean PNG {r['size']['ours']:.1f} KiB")
        print(f"  ratio ours / MapServer           : {ours_rps / ms_rps:.2f}x  (target >= 1.0x)")
        ms_cpu, our_cpu = r["cpu_ms"]["mapserver"], r["cpu_ms"]["ours"]
        print(f"  server CPU per map (without PostgreSQL): MapServer {ms_cpu:.1f} ms, ours {our_cpu:.1f} ms "
              f"(ratio {our_cpu / ms_cpu:.2f}x)")
        ms_db, our_db = r["db_ms"]["mapserver"], r["db_ms"]["ours"]
        print(f"  PostgreSQL backend CPU per map     : MapServer {ms_db:.1f} ms, ours {our_db:.1f} ms")


if __name__ == "__main__":
    main()
