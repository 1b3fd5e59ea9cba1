"""The first steps of training on full MNIST: active latent units, dead ReLUs and test ELBO.

    python benchmarks/first_steps.py --mnist ../shared/data/mnist 2e-3:0.2 2e-3:0 1e-3:0

Each argument is ``learning_rate:lr_warmup_epochs`` of Adam at batch 16 with the 5-epoch cosine
schedule of ``--recipe fast``. After 100, 500 and 1,250 steps (on the first 1,600, 6,400 and
12,000 training digits, seed 0) it prints, on the first 2,000 test digits, the active units, the
dead ReLUs of the encoder's hidden Dense layer (of 32) and the test ELBO (one draw of z).
"""

import argparse
import importlib.util
from pathlib import Path

from vae_helpers import keras, set_seed
from vae_helpers.config import TrainSettings
from vae_helpers.data import load_mnist
from vae_helpers.evaluation import elbo
from vae_helpers.models import build_vae
from vae_helpers.training import learning_rate, train_vae
from vae_helpers.optimizers import Adam

spec = importlib.util.spec_from_file_location("package_worker", Path(__file__).with_name("package_worker.py"))
package_worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(package_worker)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", default="auto")
    parser.add_argument("recipes", nargs="+", help="learning_rate:lr_warmup_epochs")
    args = parser.parse_args(argv)
    (x, _), (x_test, _) = load_mnist(args.mnist)
    x_test = x_test[:2000]
    for text in args.recipes:
        rate, warmup = (float(part) for part in text.split(":"))
        set_seed(0)
        vae = build_vae(seed=0, compile=False)
        settings = TrainSettings(epochs=5, batch_size=16, learning_rate=rate, lr_schedule="cosine", lr_warmup=warmup)
        vae.compile(Adam(learning_rate(settings, len(x))))
        points = []
        for images in (1600, 6400, 12000):  # 100, 400 and 750 steps: 100, 500 and 1,250 in all
            train_vae(vae, x[:images], epochs=1, batch_size=16, progress=None)
            found = package_worker.diagnose(vae, x_test)
            points.append((found["active_units"], found["dead_relus"], round(elbo(vae, x_test, n_samples=1, seed=0), 1)))
        print(f"learning rate {rate:g}, warm-up {warmup:g} epoch: (active units, dead ReLUs, test ELBO) after "
              f"100, 500, 1250 steps: {points}", flush=True)


if __name__ == "__main__":
    main()
