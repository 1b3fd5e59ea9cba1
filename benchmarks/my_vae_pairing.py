"""How far a correct learner's VAE ends from ``models.VAE`` in notebook 3's run, fed alike or not.

    python benchmarks/my_vae_pairing.py --mnist ../shared/data/mnist --seeds 0 1 2 3 --feed paired unpaired

For each seed, as notebook 3 does with ``SEED``: ``models.VAE`` from ``set_seed(seed)``, trained by
``train_vae`` for two epochs of the fast recipe (float32, XLA) on 10,800 of the first 12,000 training
digits; then a hand-written ``MyVAE`` (notebook 3's solution: its own sampling and its own loss
formulas) from ``set_seed(seed)`` again, trained by ``fit`` with the same optimizer, either on
``training.epoch_feed``'s batches and noise ("paired", as notebook 3 now does) or on the NumPy array
with Keras' own shuffling and the model's own noise ("unpaired", as notebook 3 did before). Prints one
JSON line per run: both validation ELBOs as ``check_my_vae`` scores them, their gap and the largest
weight difference. Each run is a process of its own (``--one``) so that no run sees another's state.
"""

import argparse
import json
import subprocess
import sys


def one(mnist, seed, feed):
    import numpy as np

    from vae_helpers import checks, config, data, keras, models, set_seed, training

    class MyVAE(keras.Model):
        def __init__(self, encoder, decoder, **kwargs):
            super().__init__(**kwargs)
            self.encoder, self.decoder = encoder, decoder
            self.seed_generator = keras.random.SeedGenerator(seed)

        def call(self, x, training=False):
            return self.encoder(x, training=training)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            ops = keras.ops
            z_mean, z_log_var = y_pred
            z = z_mean + ops.exp(0.5 * z_log_var) * keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
            p = ops.clip(self.decoder(z, training=training), 1e-7, 1.0 - 1e-7)
            reconstruction = -ops.sum(x * ops.log(p) + (1.0 - x) * ops.log(1.0 - p), axis=(1, 2, 3))
            kl = 0.5 * ops.sum(ops.exp(z_log_var) + ops.square(z_mean) - 1.0 - z_log_var, axis=-1)
            return ops.mean(reconstruction + kl)

    (x_train, _), _ = data.load_mnist(mnist)
    x_fit, x_val = training.split_validation(x_train[:12_000], 0.1, seed=seed)
    fast = config.recipe("fast", epochs=2, precision="float32", jit_compile=True)
    set_seed(seed)
    vae = models.build_vae(latent_dim=2, loss="elbo", seed=seed)
    training.compile_with(vae, fast, len(x_fit))
    training.train_vae(vae, x_fit, epochs=2, batch_size=fast.batch_size, x_val=x_val, seed=seed, progress=None)
    set_seed(seed)
    mine = MyVAE(models.build_encoder(2), models.build_decoder(2))
    training.compile_with(mine, fast, len(x_fit))
    if feed == "paired":
        fed = training.epoch_feed(x_fit, fast.batch_size, seed=seed)
        mine.fit(fed.data, steps_per_epoch=fed.steps_per_epoch, epochs=2, shuffle=False, verbose=0,
                 callbacks=[fed.callback])
    else:
        mine.fit(x_fit, epochs=2, batch_size=fast.batch_size, verbose=0)
    ours, theirs = checks._scores(mine, x_val, seed), checks._scores(vae, x_val, seed)
    network = lambda model: model.encoder.get_weights() + model.decoder.get_weights()  # noqa: E731
    print(json.dumps({"seed": seed, "feed": feed, "my_vae": ours["ELBO"], "models_vae": theirs["ELBO"],
                      "gap": ours["ELBO"] - theirs["ELBO"], "kl_my_vae": ours["KL"], "kl_models_vae": theirs["KL"],
                      "largest_weight_difference": max(float(np.abs(a - b).max())
                                                       for a, b in zip(network(mine), network(vae), strict=True))}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", default="auto")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--feed", nargs="+", choices=("paired", "unpaired"), default=["paired", "unpaired"])
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        return one(args.mnist, args.seeds[0], args.feed[0])
    for seed in args.seeds:
        for feed in args.feed:
            subprocess.run([sys.executable, __file__, "--one", "--mnist", args.mnist, "--seeds", str(seed),
                            "--feed", feed], check=True)
    return None


if __name__ == "__main__":
    main()
