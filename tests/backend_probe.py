"""What the shipped models compute, on whichever backend this process runs: the probe behind test_backends.py.

``KERAS_BACKEND=jax python tests/backend_probe.py OUT.npz`` writes the backend's name and, for each shipped
model, its decodes of fixed codes and its encodings of fixed images (the conditional model's decodes, and the
plain autoencoder's decodes and encodings, too).
"""

import sys

import numpy as np


def probe():
    from vae_helpers import BACKEND, conditional, latent, pretrained  # noqa: PLC0415  (after KERAS_BACKEND is read)

    rng = np.random.default_rng(7)
    images = rng.uniform(0, 1, (8, 28, 28, 1)).astype(np.float32)
    out = {"backend": np.array(BACKEND)}
    for latent_dim in sorted(pretrained.SHIPPED):
        vae = pretrained.load_pretrained(latent_dim)
        out[f"decode_{latent_dim}"] = latent.decode(vae, rng.normal(0, 1.5, (16, latent_dim)))
        out[f"encode_{latent_dim}"] = np.stack(latent.encode(vae, images, return_log_var=True))
    cvae = pretrained.load_pretrained(2, conditional=True)
    out["decode_conditional"] = conditional.decode(cvae, rng.normal(0, 1.5, (10, 2)), np.arange(10))
    _, ae_encoder, ae_decoder = pretrained.load_autoencoder(2)
    out["decode_autoencoder"] = latent.decode(ae_decoder, rng.normal(0, 30.0, (16, 2)))  # its codes spread wider
    out["encode_autoencoder"] = latent.encode(ae_encoder, images)
    return out


if __name__ == "__main__":
    np.savez(sys.argv[1], **probe())
