"""Draw the chapter's three teaching diagrams as PNG files (matplotlib only, headless, deterministic).

    python docs/diagrams.py              # writes docs/diagrams/{architecture,graphical_model,reparameterization}.png
    python docs/diagrams.py --out DIR    # writes them into DIR instead

Colours: blue = encoder, green = decoder, orange = sampling and noise, red = loss and gradients.
"""

import argparse
from pathlib import Path

import matplotlib
import matplotlib.style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Patch, Rectangle

DPI = 100
FONT = 12
INK = "#222222"
ENCODER, DECODER, NOISE, LOSS = "#1f5fa8", "#1b7f4b", "#b86e00", "#c0392b"
FILL = {ENCODER: "#dce9f7", DECODER: "#dcf1e4", NOISE: "#fdebc8", LOSS: "#f9dcd8", INK: "#eeeeee"}


def new_figure(width, height):
    """A white figure of width x height inches whose data coordinates are inches (origin bottom left)."""
    fig = Figure(figsize=(width, height), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    return fig, ax


def box(ax, x, y, w, h, text, colour, sub=None, size=FONT):
    """A rounded box centred on (x, y) with a label and an optional bold second line; returns the patch."""
    patch = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.08",
                           facecolor=FILL[colour], edgecolor=colour, linewidth=1.6)
    ax.add_patch(patch)
    shift = 0.12 if sub else 0
    ax.text(x, y + shift, text, ha="center", va="center", fontsize=size, color=INK)
    if sub:
        ax.text(x, y - shift - 0.02, sub, ha="center", va="center", fontsize=size, color=INK, weight="bold")
    return patch


def arrow(ax, start, end, colour=INK, rad=0.0, dashed=False, width=1.6):
    """An arrow between two points or patches (from centre to centre, clipped at a patch's edge)."""
    def centre(p):
        return getattr(p, "center", None) or (p.get_x() + p.get_width() / 2, p.get_y() + p.get_height() / 2)

    patches = [p if isinstance(p, Patch) else None for p in (start, end)]
    ends = [centre(p) if isinstance(p, Patch) else p for p in (start, end)]
    ax.add_patch(FancyArrowPatch(*ends, patchA=patches[0], patchB=patches[1], arrowstyle="-|>",
                                 mutation_scale=16, connectionstyle=f"arc3,rad={rad}", color=colour,
                                 linewidth=width, linestyle=(0, (5, 3)) if dashed else "-", shrinkA=2, shrinkB=2))


def label(ax, x, y, text, colour=INK, size=FONT, **kwargs):
    """Free text centred on (x, y)."""
    ax.text(x, y, text, ha=kwargs.pop("ha", "center"), va="center", fontsize=size, color=colour, **kwargs)


def architecture():
    """Encoder -> Sampling layer -> decoder, with the tensor shape after every layer, and the VAELoss layer."""
    fig, ax = new_figure(13.6, 7.9)
    bw, bh, top = 3.0, 0.62, 6.9                           # box size, centre of the top row
    xa, xh, xs, xl, xd = 1.8, 4.75, 7.55, 6.7, 11.6        # encoder, heads, sampler, loss, decoder centres
    for x, text, colour in ((xa, r"ENCODER  $q(z \mid x)$", ENCODER), (xl, "LOSS (VAELoss layer)", LOSS),
                            (xd, r"DECODER  $p(x \mid z)$", DECODER)):
        label(ax, x, 7.55, text, colour, 14, weight="bold")
    encoder = [("input image $x$", "28×28×1", INK)] + [
        (f"Conv2D {f}, 3×3, stride {s}, ReLU", "28×28×32" if f == 32 else "14×14×64", ENCODER)
        for f, s in ((32, 1), (64, 2), (64, 1), (64, 1))] + [
        ("Flatten", "12,544", ENCODER), ("Dense 32, ReLU", "32", ENCODER)]
    enc = [box(ax, xa, top - 0.86 * i, bw, bh, t, c, s) for i, (t, s, c) in enumerate(encoder)]
    for a, b in zip(enc, enc[1:]):
        arrow(ax, a, b, ENCODER)
    y32 = top - 0.86 * 6
    for y, name in ((y32 + 0.5, "z_mean"), (y32 - 0.55, "z_log_var")):
        arrow(ax, (xa + bw / 2, y32), box(ax, xh, y, 1.8, bh, f"Dense: {name}", ENCODER, "2"), ENCODER)
    ax.add_patch(FancyBboxPatch((xh - 1.0, y32 - 1.05), 2.0, 2.05, boxstyle="round,pad=0,rounding_size=0.1",
                                fill=False, edgecolor=ENCODER, linestyle=(0, (4, 3)), linewidth=1.2))
    label(ax, xh, y32 - 1.35, r"the two heads: $\mu$ and $\log\sigma^2$", ENCODER)

    sampler = box(ax, xs, y32, 2.9, 0.95, "z = z_mean + exp(½ z_log_var) · ε", NOISE, "2", size=11)
    eps = box(ax, xs, 4.1, 2.2, bh, r"noise $\varepsilon \sim \mathcal{N}(0, I)$", NOISE, "2")
    label(ax, xs, y32 - 0.8, "SAMPLING LAYER", NOISE, 14, weight="bold")
    arrow(ax, eps, sampler, NOISE)
    arrow(ax, (xh + 1.0, y32), sampler, ENCODER)

    decoder = [("Dense 12,544, ReLU", "12,544"), ("Reshape", "14×14×64"),
               ("Conv2DTranspose 32, stride 2, ReLU", "28×28×32"), ("Conv2D 1, 3×3, sigmoid", "28×28×1"),
               ("x_decoded: pixel probabilities", "28×28×1")]
    pitch = (top - y32) / 4
    dec = [box(ax, xd, y32 + pitch * i, bw, bh, t, DECODER, s, size=11 if len(t) > 32 else FONT)
           for i, (t, s) in enumerate(decoder)]
    for a, b in zip(dec, dec[1:]):
        arrow(ax, a, b, DECODER)
    arrow(ax, sampler, dec[0], NOISE)
    label(ax, (xs + 1.45 + xd - bw / 2) / 2, y32 + 0.22, "$z$", NOISE, 14)

    ax.add_patch(FancyBboxPatch((xl - 2.4, 5.45), 4.8, 1.75, boxstyle="round,pad=0,rounding_size=0.08",
                                facecolor=FILL[LOSS], edgecolor=LOSS, linewidth=1.6))
    label(ax, xl, 6.85, "reconstruction: BCE summed over 784 pixels")
    label(ax, xl, 6.35, r"+ KL$(\,q(z \mid x)\ \|\ \mathcal{N}(0, I)\,)$")
    label(ax, xl, 5.83, "= −ELBO  (nats per image)", weight="bold")
    arrow(ax, (xa + bw / 2, top), (xl - 2.4, top), INK)
    label(ax, (xa + bw / 2 + xl - 2.4) / 2, top + 0.22, "$x$", INK, 14)
    arrow(ax, (xd - bw / 2, top), (xl + 2.4, top), DECODER)
    label(ax, (xd - bw / 2 + xl + 2.4) / 2, top + 0.22, r"$\hat{x}$", DECODER, 14)
    arrow(ax, (xh, y32 + 1.0), (xh, 5.45), ENCODER)
    label(ax, xh + 0.1, 4.0, "z_mean,\nz_log_var", ENCODER, ha="left")
    return fig


def graphical_model():
    """The generative model p(z) p(x | z) beside the inference model q(z | x), each in a plate of N images."""
    fig, ax = new_figure(12, 6.0)
    for left, title, inference in ((0.6, "generative model: $p(z)\\ p(x \\mid z)$  (decoder)", False),
                                   (6.6, "inference model: $q(z \\mid x)$  (encoder)", True)):
        cx = left + 2.4
        ax.add_patch(Rectangle((left + 1.2, 1.45), 2.6, 3.6, fill=False, edgecolor=INK, linewidth=1.4))
        label(ax, left + 3.65, 1.7, "$N$ images", ha="right")
        z = Circle((cx, 4.1), 0.42, facecolor="white", edgecolor=INK, linewidth=1.8)
        x = Circle((cx, 2.4), 0.42, facecolor="#c8c8c8", edgecolor=INK, linewidth=1.8)
        for node, name in ((z, "$z$"), (x, "$x$")):
            ax.add_patch(node)
            label(ax, *node.center, name, size=18)
        colour, param, name = (ENCODER, r"$\phi$", "encoder") if inference else (DECODER, r"$\theta$", "decoder")
        if inference:
            arrow(ax, x, z, ENCODER, dashed=True, width=2)
        else:
            arrow(ax, z, x, DECODER, width=2)
            label(ax, cx, 5.6, r"prior $p(z) = \mathcal{N}(0, I)$", NOISE)
            arrow(ax, (cx, 5.4), z, NOISE)
        label(ax, cx + 0.2, 3.25, name, colour, ha="left")
        dot = Circle((left + 0.3, 3.25), 0.07, color=colour)
        ax.add_patch(dot)
        arrow(ax, dot, z if inference else x, colour, dashed=inference, width=1.2)
        label(ax, left + 0.3, 3.58, param, colour, 15)
        label(ax, cx, 0.95, title, colour, 13)
    label(ax, 6.0, 0.35, "shaded: observed image $x$;  white: latent code $z$;  "
          r"$\theta$, $\phi$: decoder and encoder weights;  dashed: approximate posterior", "#555555", 11)
    return fig


def reparameterization():
    """The reparameterization trick as a computation graph: gradients stop at a random node, pass a deterministic one."""
    fig, ax = new_figure(13, 6.2)
    for ox, reparam in ((0.3, False), (6.9, True)):
        label(ax, ox + 2.9, 5.8, "reparameterized" if reparam else "sampling in a black box", INK, 15, weight="bold")
        mu = box(ax, ox + 0.75, 4.6, 1.3, 0.6, r"$\mu$", ENCODER)
        logvar = box(ax, ox + 0.75, 1.6, 1.3, 0.6, r"$\log\sigma^2$", ENCODER)
        if reparam:
            z = box(ax, ox + 3.0, 3.1, 1.95, 0.9, "deterministic", NOISE,
                    r"$z = \mu + e^{\frac{1}{2}\log\sigma^2}\,\varepsilon$")
        else:
            z = box(ax, ox + 3.0, 3.1, 1.95, 0.9, "random node", NOISE, r"$z \sim \mathcal{N}(\mu, \sigma^2)$")
        loss = box(ax, ox + 5.3, 3.1, 1.05, 0.9, "decoder", LOSS, "+ loss $L$")
        for node in (mu, logvar):
            arrow(ax, node, z, INK)
        arrow(ax, z, loss, INK)
        arrow(ax, (ox + 5.0, 3.6), (ox + 3.3, 3.6), LOSS, rad=0.5, dashed=True)
        label(ax, ox + 4.15, 4.3, r"$\partial L / \partial z$", LOSS)
        if reparam:
            eps = box(ax, ox + 3.45, 1.3, 1.5, 0.6, r"$\varepsilon \sim \mathcal{N}(0, I)$", NOISE, size=11)
            arrow(ax, (ox + 3.45, 1.6), (ox + 3.45, 2.65), NOISE)
            label(ax, ox + 3.45, 0.65, "an input with no trainable\nparameter: no update", "#555555", 11)
            # each gradient arrow ends on the right edge of its box (x = ox + 1.4)
            arrow(ax, (ox + 2.7, 3.6), (ox + 1.42, 4.6), LOSS, rad=0.35, dashed=True)
            label(ax, ox + 2.35, 4.75, r"$\partial z / \partial \mu = 1$", LOSS, ha="left")
            arrow(ax, (ox + 2.7, 2.6), (ox + 1.42, 1.6), LOSS, rad=-0.35, dashed=True)
            label(ax, ox + 0.75, 0.85, r"$\partial z / \partial \log\sigma^2 = \frac{1}{2}\,\sigma\,\varepsilon$",
                  LOSS)
        else:
            for sign in (1, -1):                            # towards mu (up) and log sigma^2 (down), blocked
                arrow(ax, (ox + 2.75, 3.1 + sign * 0.55), (ox + 2.2, 3.1 + sign * 1.05), LOSS, dashed=True)
                label(ax, ox + 2.0, 3.1 + sign * 1.22, "✗", LOSS, 24, weight="bold")
                label(ax, ox + 2.0, 3.1 + sign * 1.6, "no gradient", LOSS, 11)
            label(ax, ox + 4.1, 1.45, "backpropagation cannot pass\nthrough a random draw: to learn\n"
                  r"$\mu$ and $\sigma$, the encoder would" "\nneed a high-variance estimator", LOSS, 11)
    ax.plot([6.55, 6.55], [0.45, 6.05], color="#bbbbbb", linewidth=1)
    label(ax, 6.5, 0.2, "black arrows: forward pass      red dashed arrows: gradients (backward pass)", "#555555", 11)
    return fig


DIAGRAMS = {"architecture": architecture, "graphical_model": graphical_model, "reparameterization": reparameterization}


def main(argv=None):
    """Draw every diagram into --out (default docs/diagrams/) and return the written paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "diagrams")
    out = parser.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with matplotlib.style.context("default"), matplotlib.rc_context({"font.family": "DejaVu Sans",
                                                                        "mathtext.fontset": "dejavusans"}):
        for name, draw in DIAGRAMS.items():
            path = out / f"{name}.png"
            draw().savefig(path, dpi=DPI, facecolor="white", metadata={"Software": None})
            paths.append(path)
    return paths


if __name__ == "__main__":
    for written in main():
        print(written)
