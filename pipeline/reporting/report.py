"""What 05_dream.py shows a person: animations (GIF, and MP4 when a writer is available), figures, and
``report.html``, one self-contained page for the whole run.

The page embeds every image as a base64 data URI and carries its CSS and its one small script inline; a
Content-Security-Policy forbids anything else, so opening it makes no request. The script marks images that
failed to load and records on ``<body>`` how many images loaded and how many script errors happened
(``data-images``, ``data-images-ok``, ``data-errors``), which the headless-browser test reads.
"""
from __future__ import annotations

import base64
import csv
import html
import json
import math
import shutil
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from data.atomic import atomic
from pipeline.contract import evaluations
from pipeline.contract.runconfig import atomic_write_text, load_config
from pipeline.reporting import metrics, plots

# Frames are 64×64. GIFs store them 2× larger (nearest neighbour), which leaves room for a caption; the page
# shows them 2× larger again with pixelated scaling. Storing them 4× larger would make a 200-step dream about
# 3 MB instead of 1 MB: LZW compresses the repeated rows of an upscaled frame poorly.
SCALE = 2
COMPARISON_SCALE = 3  # real | dream side by side, wide enough for the error plot under them to be read
FPS = 25  # browsers slow GIF frames shorter than 20 ms down to 100 ms; 40 ms plays everywhere
CAPTION_PX = 14


# -- animations ------------------------------------------------------------------------------------
def upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """(..., H, W, 3) → (..., scale·H, scale·W, 3), nearest neighbour."""
    return frames.repeat(scale, axis=-3).repeat(scale, axis=-2)


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default(size=10)


def captioned(frame: np.ndarray, text: str) -> Image.Image:
    """An (H, W, 3) frame with a dark strip of text under it."""
    h, w = frame.shape[:2]
    img = Image.new("RGB", (w, h + CAPTION_PX), (24, 24, 24))
    img.paste(Image.fromarray(frame), (0, 0))
    ImageDraw.Draw(img).text((4, h + 2), text, fill=(235, 235, 235), font=_font())
    return img


def save_gif(images: Sequence[Image.Image], path: Path, fps: int = FPS) -> None:
    """An endlessly looping GIF, written to a temporary name first. Each frame gets its own 256-colour palette
    without dithering: dithering noise would triple the file (LZW compresses flat runs, not noise)."""
    frames = [im.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE) for im in images]
    with atomic(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0)


def mp4_writer() -> str | None:
    """What can write MP4 here: ``imageio-ffmpeg`` (its bundled ffmpeg), an ``ffmpeg`` on the PATH, or None."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg")


def save_mp4(images: Sequence[Image.Image], path: Path, fps: int = FPS) -> bool:
    """H.264 MP4 of ``images`` through ffmpeg; False (and nothing written) when there is no ffmpeg."""
    exe = mp4_writer()
    if exe is None:
        return False
    w, h = images[0].size
    tmp = path.with_name(path.stem + ".tmp.mp4")
    cmd = [exe, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps),
           "-i", "-", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-pix_fmt", "yuv420p", "-c:v", "libx264", str(tmp)]
    proc = subprocess.run(cmd, input=b"".join(np.asarray(im.convert("RGB")).tobytes() for im in images),
                          capture_output=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        return False
    tmp.replace(path)
    return True


def dream_film(frames: np.ndarray, rewards: np.ndarray, done_prob: np.ndarray, title: str) -> list[Image.Image]:
    """One dream: frames (T+1, 64, 64, 3), rewards and done_prob (T,) → captioned, upscaled GIF frames."""
    big = upscale(frames, SCALE)
    out = [captioned(big[0], f"{title}  t 0")]
    total = 0.0
    for t in range(len(rewards)):
        total += float(rewards[t])
        out.append(captioned(big[t + 1], f"t {t + 1}  R {total:+.1f}  done {done_prob[t]:.2f}"))
    return out


# -- figures -----------------------------------------------------------------------------------------
def _figure_to_array(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def error_figure(error: np.ndarray, floor: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Plot the per-step error of the dream (and V's floor) against the real frames; save it to ``path``.
    Returns the plot as an image (h, w, 3) as wide as the comparison film and the pixel column of each step,
    for a moving cursor."""
    dpi, width_px = 100, 2 * 64 * COMPARISON_SCALE
    fig, ax = plots.pyplot().subplots(figsize=(width_px / dpi, 1.9), dpi=dpi)
    steps = np.arange(len(error))
    ax.plot(steps, error, label="dream (M, open loop) vs real", color="tab:red")
    ax.plot(steps, floor, label="V's reconstruction vs real (floor)", color="tab:blue", alpha=0.8)
    ax.set_xlim(0, max(1, len(error) - 1))
    ax.set_ylim(0, max(float(np.max(error)), float(np.max(floor)), 1e-4) * 1.1)
    ax.set_xlabel("step", fontsize=8)
    ax.set_ylabel("MSE per pixel", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout(pad=0.3)
    image = _figure_to_array(fig)
    # Display coordinates of each step on the x axis (origin at the figure's left edge).
    columns = ax.transData.transform(np.stack([steps, np.zeros_like(steps)], axis=1).astype(float))[:, 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    plots.save(fig, path, dpi)
    return image, np.round(columns).astype(int)


def comparison_film(real: np.ndarray, dreamed: np.ndarray, plot: np.ndarray, columns: np.ndarray,
                    temperature: float) -> list[Image.Image]:
    """Real and dreamed frames (T+1, 64, 64, 3) side by side, the error plot under them with a cursor at t."""
    top_real, top_dream = upscale(real, COMPARISON_SCALE), upscale(dreamed, COMPARISON_SCALE)
    w = top_real.shape[2] * 2
    plot_img = Image.fromarray(plot)
    h = CAPTION_PX + top_real.shape[1] + plot_img.height
    out = []
    for t in range(len(real)):
        img = Image.new("RGB", (w, h), (24, 24, 24))
        draw = ImageDraw.Draw(img)
        draw.text((4, 2), f"real env   t {t}", fill=(235, 235, 235), font=_font())
        draw.text((w // 2 + 4, 2), f"dream  (M, tau {temperature:g})", fill=(235, 235, 235), font=_font())
        img.paste(Image.fromarray(top_real[t]), (0, CAPTION_PX))
        img.paste(Image.fromarray(top_dream[t]), (w // 2, CAPTION_PX))
        y0 = CAPTION_PX + top_real.shape[1]
        img.paste(plot_img, (0, y0))
        x = int(columns[t])
        draw.line([(x, y0 + 4), (x, h - 4)], fill=(40, 40, 40), width=2)
        out.append(img)
    return out


def world_view_film(real: np.ndarray, recon: np.ndarray, predicted: np.ndarray, title: str,
                    every: int = 1) -> list[Image.Image]:
    """What the world model sees, frame by frame: the real frame, V's reconstruction of it and M's prediction
    of it made one step earlier (none at t = 0), side by side, every ``every``-th step."""
    panels = [upscale(x, COMPARISON_SCALE) for x in (real, recon)]
    blank = np.full_like(predicted[:1], 24)
    panels.append(upscale(np.concatenate([blank, predicted]), COMPARISON_SCALE))
    size = panels[0].shape[2]
    labels = ("real env", "V: reconstruction", "M: one-step prediction")
    out = []
    for t in range(0, len(real), every):
        img = Image.new("RGB", (3 * size, 2 * CAPTION_PX + panels[0].shape[1]), (24, 24, 24))
        draw = ImageDraw.Draw(img)
        for i, (label, panel) in enumerate(zip(labels, panels)):
            draw.text((i * size + 4, 2), label, fill=(235, 235, 235), font=_font())
            img.paste(Image.fromarray(panel[t]), (i * size, CAPTION_PX))
        draw.text((4, CAPTION_PX + panels[0].shape[1] + 2), f"{title}   t {t}", fill=(235, 235, 235), font=_font())
        out.append(img)
    return out


def latent_sweep_rows(decode, base: np.ndarray, dims: Sequence[int], values: np.ndarray) -> list[np.ndarray]:
    """For each dim d: frames (len(values), 64, 64, 3) decoded from ``base`` (Z,) with z[d] set to each value.
    ``decode`` maps z (N, Z) float32 → frames (N, 64, 64, 3) uint8."""
    rows = []
    for d in dims:
        z = np.repeat(base[None], len(values), axis=0).astype(np.float32)
        z[:, d] = values
        rows.append(decode(z))
    return rows


def informative_dims(mu: np.ndarray, logvar: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k latent dims carrying most information (largest mean KL from the prior over the frames mu, logvar
    (N, Z)), and each dim's mean KL (Z,). Dims V left unused sit at KL ≈ 0 and decode to the same frame."""
    kl = (0.5 * (mu ** 2 + np.exp(logvar) - 1.0 - logvar)).mean(axis=0)
    return np.argsort(-kl)[:k], kl


# -- the page ------------------------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1150px;
       padding: 1em 1.5em 4em; color: #222; background: #fafafa; line-height: 1.45; }
h1 { margin-bottom: 0.1em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 1.8em; }
.sub { color: #666; margin-top: 0; }
.grid { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
figure { margin: 0; background: #fff; border: 1px solid #e2e2e2; border-radius: 6px; padding: 8px; }
figure img { display: block; max-width: 100%; }
figure img.px { image-rendering: pixelated; }
figcaption { font-size: 0.85em; color: #555; margin-top: 4px; max-width: 520px; }
table { border-collapse: collapse; background: #fff; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td.k, th.k { text-align: left; }
.note { color: #8a5a00; background: #fff6e0; border: 1px solid #f0dca0; padding: 6px 10px; border-radius: 4px; }
.big { font-size: 1.6em; font-weight: 600; }
details { background: #fff; border: 1px solid #e2e2e2; border-radius: 6px; padding: 6px 10px; margin: 6px 0; }
summary { cursor: pointer; font-weight: 600; }
img.broken { outline: 4px solid #d00; min-width: 60px; min-height: 30px; }
#status.bad { color: #b00; font-weight: 600; }
"""

# First in <head>: counts every script error of the page, including those of later scripts.
_ERRORS_SCRIPT = "window.__pageErrors = 0; window.addEventListener('error', function () { window.__pageErrors++; });"

_STATUS_SCRIPT = """
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (im) { return !(im.complete && im.naturalWidth > 0); });
  broken.forEach(function (im) { im.classList.add('broken'); });
  var body = document.body;
  body.setAttribute('data-images', String(images.length));
  body.setAttribute('data-images-ok', String(images.length - broken.length));
  body.setAttribute('data-errors', String(window.__pageErrors));
  var status = document.getElementById('status');
  status.textContent = (images.length - broken.length) + ' of ' + images.length + ' images loaded' +
    (window.__pageErrors ? ', ' + window.__pageErrors + ' script error(s)' : '');
  if (broken.length || window.__pageErrors) { status.className = 'bad'; }
});
"""

_MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def _img(path: Path, caption: str, width: int | None = None, pixelated: bool = False) -> str:
    """A figure with the file embedded as a data URI; ``pixelated``: scaled up without smoothing (frames)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    size = f' style="width:{width}px"' if width else ""
    cls = ' class="px"' if pixelated else ""
    return (f'<figure><img src="data:{_MIME[path.suffix.lower()]};base64,{data}" alt="{html.escape(path.name)}"{cls}{size}>'
            f"<figcaption>{caption}</figcaption></figure>")


def _table(header: Sequence[str], rows: Sequence[Sequence], first_is_key: bool = True) -> str:
    def cell(v, tag: str, i: int) -> str:
        cls = ' class="k"' if first_is_key and i == 0 else ""
        if isinstance(v, float):
            v = "" if math.isnan(v) else f"{v:.2f}"
        return f"<{tag}{cls}>{html.escape(str(v))}</{tag}>"

    head = "".join(cell(h, "th", i) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell(v, "td", i) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _csv_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _number(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def _rounds_table(path: Path) -> str:
    """metrics/rounds.csv as a table: one row a round of iterate.py."""
    rows = metrics.read(path) if path.exists() else []
    if not rows:
        return ""
    cells = [("round", "d"), ("real_env_steps", ",.0f"), ("dream_steps", ",.0f"), ("nll_new_before", ".3f"),
             ("nll_new_after", ".3f"), ("calibration_dream", ".1f"), ("calibration_real", ".1f"),
             ("c_dream_return", ".1f"), ("c_real_return", ".1f")]

    def cell(row: dict, name: str, spec: str) -> str:
        value = row.get(name, float("nan"))
        return "–" if not np.isfinite(value) else format(int(value) if spec == "d" else value, spec)

    head = "".join(f"<th>{name.replace('_', ' ')}</th>" for name, _ in cells)
    body = "".join("<tr>" + "".join(f"<td>{cell(r, n, f)}</td>" for n, f in cells) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _scores_section(run: Path, summary: dict) -> str:
    parts = []
    history = evaluations.load(run)
    # The score shown: the newest published one (fresh blocks, the final controller), else the newest.
    evaluation = evaluations.latest(run, published=True) or (history[-1] if history else None)
    if evaluation:
        kind = "published score" if evaluation.get("published") else "real-env return"
        interval = (f"; 95 % CI of the mean {evaluation['ci95'][0]:.1f} – {evaluation['ci95'][1]:.1f}"
                    if "ci95" in evaluation else "")
        parts.append(f'<p><span class="big">{evaluation["mean"]:.1f} ± {evaluation["std"]:.1f}</span> {kind} '
                     f'over {evaluation["episodes"]} episodes of at most {evaluation["steps"]} steps (min '
                     f'{evaluation["min"]:.1f}, max {evaluation["max"]:.1f}{interval}); controller: '
                     f'{html.escape(str(evaluation.get("params_from", "")))}.</p>')
        if len(history) > 1:
            rows = "".join(f"<tr><td>{e.get('date', '')}</td><td>{', '.join(map(str, e.get('blocks', [e.get('block', 0)])))}"
                           f"</td><td>{e['episodes']}</td><td>{e['mean']:.1f} ± {e['std']:.1f}</td>"
                           f"<td>{'yes' if e.get('published') else ''}</td></tr>" for e in history)
            parts.append("<p>Every evaluation of this run, oldest first (a block scored more than once has become a "
                         "selection block):</p><table><tr><th>date</th><th>seed blocks</th><th>episodes</th>"
                         f"<th>mean ± std</th><th>published</th></tr>{rows}</table>")
    else:
        parts.append('<p class="note">No real-env evaluation yet: run <code>04_train_controller.py --evaluate 100</code>.</p>')
    dreams = summary.get("dreams")
    if dreams and dreams.get("returns"):
        r = np.asarray(dreams["returns"], dtype=float)
        parts.append(f'<p><span class="big">{r.mean():.1f} ± {r.std():.1f}</span> dream return (M\'s reward head) over '
                     f'{len(r)} dreams of at most {dreams["steps"]} steps at τ = {dreams["temperature"]:g}, driven by '
                     f'{html.escape(dreams["driver"])}.</p>')
    scored = [r for r in _csv_rows(run / "metrics" / "controller.csv") if r.get("eval_mean")]
    if scored:
        dream_mode = any(r.get("dream_eval_mean") for r in scored)
        header = ["generation", "fitness (best)", "CMA mean: real", "± std"]
        header += ["CMA mean: dream", "best candidate: real"] if dream_mode else []
        rows = [[int(_number(r["generation"])), _number(r["best"]), _number(r["eval_mean"]), _number(r["eval_std"])]
                + ([_number(r.get("dream_eval_mean")), _number(r.get("real_best"))] if dream_mode else [])
                for r in scored]
        where = "M's dream" if dream_mode else "the real env"
        parts.append(f"<p>Periodic scorings during evolution (fitness measured in {where}; \"real\" columns are "
                     f"mean returns in the real env):</p>" + _table(header, rows))
    return "".join(parts)


def build(run: Path) -> str:
    """The HTML page of ``run``, from what its folder holds now (any stage may be missing)."""
    config = load_config(run)
    dreams_dir = run / "dreams"
    summary = _read_json(dreams_dir / "summary.json") or {}
    env = config.get("collect", {}).get("env") or next((c.get("env") for c in config.values() if "env" in c), "?")
    core = config.get("mdnrnn", {}).get("core", "?")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    s: list[str] = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
        f"<title>World Models run: {html.escape(run.name)}</title>",
        f"<script>{_ERRORS_SCRIPT}</script><style>{_CSS}</style></head><body>",
        f"<h1>World Models run <code>{html.escape(run.name)}</code></h1>",
        f"<p class='sub'>env <b>{html.escape(str(env))}</b> · M core <b>{html.escape(str(core))}</b> · "
        f"page made {stamp} · <span id='status'>checking images…</span></p>",
        "<h2>Controller scores</h2>", _scores_section(run, summary),
    ]

    plots_dir = run / "plots"
    pngs = sorted(plots_dir.glob("*.png")) if plots_dir.is_dir() else []
    recon_epochs = [p for p in pngs if p.name.startswith("vae_recon_epoch_")]
    stage_order = ("vae", "mdnrnn", "controller")  # V, M, C, then anything else
    rounds_png = plots_dir / "rounds.png"
    if rounds_png in pngs:
        s.append("<h2>Iterative training, round by round</h2>" + _rounds_table(run / "metrics" / "rounds.csv")
                 + _img(rounds_png, "C's real and dream returns, M's dream of C against the real episodes from the same "
                                    "first frames, and M's NLL on each round's new episodes", 1000))
    curves = sorted((p for p in pngs if p not in recon_epochs and p != rounds_png),
                    key=lambda p: next((i for i, k in enumerate(stage_order) if p.name.startswith(k)), len(stage_order)))
    s.append("<h2>Training curves</h2>")
    if curves:
        s.append("<div class='grid'>" + "".join(_img(p, p.stem.replace("_", " "), 520) for p in curves) + "</div>")
    else:
        s.append("<p class='note'>No training curves in plots/ yet.</p>")

    s.append("<h2>V: reconstructions and latent sweep</h2><div class='grid'>")
    if (dreams_dir / "reconstructions.png").exists():
        s.append(_img(dreams_dir / "reconstructions.png", "Real frames (top) and V's reconstructions (bottom)."))
    elif recon_epochs:
        s.append(_img(recon_epochs[-1], f"V's reconstructions ({recon_epochs[-1].stem.replace('_', ' ')})."))
    if (dreams_dir / "latent_sweep.png").exists():
        sweep = summary.get("latent_sweep", {})
        s.append(_img(dreams_dir / "latent_sweep.png",
                      f"One real frame's z with a single dimension swept from {sweep.get('low', -3)} to "
                      f"{sweep.get('high', 3)} (rows: the dimensions V uses most, by mean KL)."))
    s.append("</div>")

    s.append("<h2>M: dreams</h2>")
    gifs = sorted(dreams_dir.glob("dream_*.gif")) if dreams_dir.is_dir() else []
    if gifs:
        d = summary.get("dreams", {})
        s.append(f"<p>Each dream starts from a real frame and is rolled forward by M alone at τ = {d.get('temperature', '?')}"
                 f", driven by {html.escape(str(d.get('driver', '?')))}, and decoded through V. R: reward summed from "
                 "M's reward head; done: M's done probability (the dream ends when it passes 0.5).</p>")
        s.append("<div class='grid'>" + "".join(_img(g, g.stem.replace("_", " "), 2 * 64 * SCALE, pixelated=True) for g in gifs)
                 + "</div>")
        if summary.get("mp4"):
            s.append("<p>MP4 copies of every animation are in <code>dreams/</code>.</p>")
        else:
            s.append("<p class='note'>No MP4 written: neither imageio-ffmpeg nor ffmpeg is available here (GIFs only).</p>")
    else:
        s.append("<p class='note'>No dreams yet: run <code>05_dream.py</code>.</p>")

    comparison = summary.get("real_vs_dream")
    driving = summary.get("driving")
    if (dreams_dir / "driving.gif").exists() and driving:
        s.append(f"<h2>The controller driving</h2><p>One whole real episode ({driving['steps']} steps, return "
                 f"{driving['return']:.1f}, episode seed {driving['seed']}), every {driving.get('every', 1)}th frame.</p>")
        s.append(_img(dreams_dir / "driving.gif", "the controller in the real env", 2 * 96, pixelated=True))
    if (dreams_dir / "world_view.gif").exists() and comparison:
        s.append("<h2>What the world model sees</h2><p>The real episode below, frame by frame: the real frame, V's "
                 "reconstruction of it, and M's prediction of it made one step earlier from the previous z, the "
                 "action and its state (the mean of its mixture, decoded by V).</p>")
        s.append(_img(dreams_dir / "world_view.gif", "real | V's reconstruction | M's one-step prediction",
                      pixelated=True))
    s.append("<h2>Real against dream</h2>")
    if (dreams_dir / "real_vs_dream.gif").exists() and comparison:
        s.append(f"<p>One real episode (seed {comparison['seed']}, driven by {html.escape(comparison['driver'])}) and M's "
                 f"open-loop dream of the same actions from the same first frame. Real return "
                 f"{comparison['real_return']:.1f}; M's reward head summed over the dream "
                 f"{comparison['dream_return']:.1f}. The plot under the frames is the per-step error.</p>")
        s.append("<div class='grid'>" + _img(dreams_dir / "real_vs_dream.gif", "real (left) and dream (right)")
                 + _img(dreams_dir / "real_vs_dream_error.png", "per-step mean squared error per pixel") + "</div>")
    elif summary.get("real_vs_dream_skipped"):
        s.append(f"<p class='note'>Skipped: {html.escape(summary['real_vs_dream_skipped'])}</p>")
    else:
        s.append("<p class='note'>Not made yet: run <code>05_dream.py</code>.</p>")

    s.append("<h2>Configuration of every stage</h2>")
    for stage, entry in config.items():
        rows = [[k, v if isinstance(v, str) else json.dumps(v)] for k, v in sorted(entry.items())]
        s.append(f"<details><summary>{html.escape(stage)}</summary>{_table(['setting', 'value'], rows)}</details>")
    if not config:
        s.append("<p class='note'>No config.json in this run folder.</p>")
    s.append(f"<script>{_STATUS_SCRIPT}</script></body></html>")
    return "\n".join(s)


def write(run: Path) -> Path:
    """Write ``<run>/report.html`` (atomically) and return its path."""
    path = run / "report.html"
    atomic_write_text(path, build(run))
    return path
