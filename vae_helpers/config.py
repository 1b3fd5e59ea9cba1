"""Settings shared by the package, the CLI and the notebooks: environment switches, the loss presets,
the settings of a training run, the one check for counts, and the memory limit for user-sized arrays.

Pure Python: importing it (or ``vae_helpers.data``) does not load TensorFlow.
"""

import dataclasses
import math
import numbers
import os

#: Forces the data source of ``load_mnist(source="auto")``: "keras", "sample" or a folder path.
DATA_ENV = "VAE_HELPERS_DATA"
#: Set to 1 to shrink data and epochs in the notebooks (used by the test suite and CI).
QUICK_ENV = "VAE_HELPERS_QUICK"
#: Where notebooks save what they train (default: ``vae-runs`` in the working directory).
RUNS_ENV = "VAE_HELPERS_RUNS"
#: Memory (MB) that one user-sized allocation may take; default DEFAULT_MEMORY_MB.
MEMORY_ENV = "VAE_HELPERS_MEMORY_MB"
#: Half of a 2 GB Binder session: TensorFlow, the data and the notebook's own arrays need the other half.
DEFAULT_MEMORY_MB = 1024

# Memory estimates (bytes), measured with TensorFlow 2.21 on CPU (peak resident memory against size):
#: one image in a training step of the book's network (activations kept for the backward pass): about 0.55 MB
TRAIN_BYTES_PER_IMAGE = 600_000
#: each pixel of a decoded (code, image) pair while scoring (ELBO, IWAE): tiled images, probabilities,
#: per-pixel terms; about 25 kB for a 28x28 digit
SCORE_BYTES_PER_PIXEL = 32
#: each parameter of the network while training: weights, gradients and Adam's two moments, float32
TRAIN_BYTES_PER_PARAMETER = 16
#: the book's network: 550,629 parameters at latent_dim=2, and 12,610 more per extra latent dimension
BOOK_PARAMETERS, PARAMETERS_PER_LATENT_DIM = 550_629, 12_610

DEFAULT_LEARNING_RATE = 1e-3
#: Learning-rate schedules of a training run: constant, or cosine decay to 5% over all its steps.
LR_SCHEDULES = ("constant", "cosine")
#: Named sets of training settings (``python -m vae_helpers train --recipe NAME``); flags given beside one win.
#: "fast" reached the book's 10-epoch test ELBO after 3.5 to 5 epochs (the default recipe: 8.5; BENCHMARKS.md, "Time to quality").
#: Its arithmetic depends on the CPU (``recipe_settings`` adds FAST_ON_BF16_CPU or FAST_ELSEWHERE).
RECIPES = {
    "default": {},
    "fast": {"epochs": 5, "batch_size": 16, "learning_rate": 2e-3, "lr_schedule": "cosine", "lr_warmup": 0.2},
}
#: On a CPU with AMX (bfloat16 matrix units): bfloat16 hidden layers, about 2x fewer CPU-seconds per image; XLA off,
#: because XLA's CPU kernels do not use AMX and were slower than TensorFlow's own (BENCHMARKS.md, "bfloat16").
FAST_ON_BF16_CPU = {"precision": "bfloat16", "jit_compile": False}
#: Elsewhere: float32 with the step compiled by XLA (on TensorFlow, 1.2x to 1.3x fewer CPU-seconds per image at batch 16).
FAST_ELSEWHERE = {"precision": "float32", "jit_compile": True}
#: CPU flag (Linux /proc/cpuinfo) of the bfloat16 matrix units that make bfloat16 training pay (Intel AMX).
BF16_CPU_FLAG = "amx_bf16"
#: Where Linux lists the CPU's features.
CPUINFO = "/proc/cpuinfo"


def cpu_flags(cpuinfo=None):
    """The CPU's feature flags (a set of names) from ``/proc/cpuinfo``; None where that cannot be read (not Linux)."""
    try:
        text = open(cpuinfo or CPUINFO, encoding="utf-8", errors="replace").read()
    except OSError:
        return None
    return {flag for line in text.splitlines() if line.split(":")[0].strip() == "flags"
            for flag in line.split(":", 1)[-1].split()}


def cpu_has_bf16_units(cpuinfo=None):
    """Whether this CPU has AMX bfloat16 units (its flags list ``amx_bf16``); False where that cannot be read."""
    return BF16_CPU_FLAG in (cpu_flags(cpuinfo) or ())


def quick_mode():
    """True when ``VAE_HELPERS_QUICK`` is set to anything but "" or "0"."""
    return os.environ.get(QUICK_ENV, "") not in ("", "0")


def runs_dir():
    """Folder for runs saved by notebooks: ``$VAE_HELPERS_RUNS`` or ``./vae-runs``."""
    return os.path.abspath(os.environ.get(RUNS_ENV, "vae-runs"))


def check_count(value, name, minimum=1):
    """``value`` as an int if it is a whole number of at least ``minimum``; ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


class MemoryLimitError(ValueError):
    """A requested array would not fit in the memory of a 2 GB Binder session (see ``check_memory``)."""


def memory_limit_bytes():
    """The most one user-sized allocation may take: ``$VAE_HELPERS_MEMORY_MB`` or 1024 MB."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    try:
        megabytes = float(text) if text else DEFAULT_MEMORY_MB
    except ValueError:
        raise ValueError(f"${MEMORY_ENV} must be a number of megabytes, got {text!r}") from None
    return int(megabytes * 2**20)


def check_memory(nbytes, what, fix):
    """MemoryLimitError if ``what`` would need more than ``memory_limit_bytes()``; the message says how to fix it.

    ``nbytes`` is an estimate (see the constants above); the check protects a 2 GB Binder kernel,
    which a too-large request would otherwise kill without a word.
    """
    limit = memory_limit_bytes()
    if nbytes > limit:
        raise MemoryLimitError(f"{what} would need about {nbytes / 2**20:,.0f} MB of memory (an estimate), more than "
                               f"the {limit / 2**20:,.0f} MB allowed, which keeps a 2 GB Binder session alive; {fix} "
                               f"(on a bigger machine, raise the limit with ${MEMORY_ENV})")


def training_memory(batch_size, latent_dim):
    """Estimated peak memory (bytes) of training the book's network: its parameters and one batch's activations."""
    parameters = BOOK_PARAMETERS + PARAMETERS_PER_LATENT_DIM * (latent_dim - 2)
    return TRAIN_BYTES_PER_PARAMETER * parameters + TRAIN_BYTES_PER_IMAGE * batch_size


@dataclasses.dataclass(frozen=True)
class LossPreset:
    """How a VAE is trained: which objective and which sampling convention."""

    name: str
    sampling: str  # "standard": sigma = exp(0.5 * log_var); "book": sigma = exp(log_var)
    description: str


PRESETS = {
    "elbo": LossPreset("elbo", "standard", "negative ELBO in nats (beta = 1), standard sampling"),
    "book": LossPreset("book", "book", "1st edition: per-pixel mean BCE + 5e-4 * KL mean, sigma = exp(z_log_var)"),
}
SAMPLING_CONVENTIONS = ("standard", "book")


def get_preset(name):
    """The LossPreset called ``name`` ("elbo" or "book"); ValueError otherwise."""
    if isinstance(name, LossPreset):
        return name
    if name not in PRESETS:
        raise ValueError(f"unknown loss preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def check_convention(convention):
    """ValueError unless ``convention`` is a known sampling convention."""
    if convention not in SAMPLING_CONVENTIONS:
        raise ValueError(f"unknown sampling convention {convention!r}; choose one of {SAMPLING_CONVENTIONS}")


#: Arithmetic of a network's hidden layers: float32, or bfloat16 (Keras' "mixed_bfloat16": float32 weights).
PRECISIONS = ("float32", "bfloat16")


def check_precision(precision):
    """``precision`` if it is one of PRECISIONS; ValueError naming them otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def recipe_settings(name, bf16_units=None):
    """The settings of recipe ``name`` (a dict of TrainSettings fields); ValueError naming the recipes otherwise.

    "fast" adds the arithmetic that is quickest on this CPU: ``bf16_units`` (default:
    ``cpu_has_bf16_units()``) picks FAST_ON_BF16_CPU, else FAST_ELSEWHERE. The run's record keeps
    the choice, so a resumed run keeps it on any machine.
    """
    if name not in RECIPES:
        raise ValueError(f"--recipe must be one of {sorted(RECIPES)}, got {name!r}")
    if name != "fast":
        return dict(RECIPES[name])
    bf16_units = cpu_has_bf16_units() if bf16_units is None else bf16_units
    return {**RECIPES[name], **(FAST_ON_BF16_CPU if bf16_units else FAST_ELSEWHERE)}


def recipe(name, **changes):
    """The validated TrainSettings of recipe ``name``, with ``changes`` (say ``epochs=2``) over it.

    For a notebook that trains the way ``python -m vae_helpers train --recipe NAME`` would.
    """
    return TrainSettings(**{**recipe_settings(name), **changes}).validate()


@dataclasses.dataclass
class TrainSettings:
    """Everything that defines a training run (stored in ``run.json``; the CLI's flags and defaults)."""

    data: str = "auto"
    epochs: int = 30
    batch_size: int = 16
    latent_dim: int = 2
    loss: str = "elbo"
    seed: int = 0
    learning_rate: float = DEFAULT_LEARNING_RATE
    lr_schedule: str = "constant"
    lr_warmup: float = 0.0
    kl_warmup: float = 0.0
    validation_fraction: float = 0.1
    #: Compile the training step with XLA (Keras' ``jit_compile``) on TensorFlow, where Keras leaves it off on a
    #: CPU: it pays at small batches over long runs on a CPU without AMX (on one with AMX it was slower), and costs
    #: a few seconds of compiling per model. JAX
    #: always compiles with XLA; on PyTorch it is not used (Keras would hand the step to ``torch.compile``).
    jit_compile: bool = False
    #: Arithmetic of the hidden layers (``models.build_vae``): "float32", or "bfloat16" (weights stay float32),
    #: which pays on a CPU with AMX; the run is scored in float32 either way.
    precision: str = "float32"

    def validate(self):
        """Raise ValueError naming the first bad setting (as its command-line flag), before anything is written."""
        check_count(self.epochs, "--epochs")
        check_count(self.batch_size, "--batch-size")
        check_count(self.latent_dim, "--latent-dim")
        check_count(self.seed, "--seed", minimum=0)
        if self.seed >= 2**32:
            raise ValueError(f"--seed must be below 2**32 (NumPy's limit), got {self.seed}")
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):
            raise ValueError(f"--learning-rate must be a positive number, got {self.learning_rate!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"--lr-schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not (isinstance(self.lr_warmup, (int, float)) and 0.0 <= self.lr_warmup < self.epochs):
            raise ValueError(f"--lr-warmup must be a number of epochs from 0 to less than --epochs, got {self.lr_warmup!r}")
        if not (isinstance(self.kl_warmup, (int, float)) and 0.0 <= self.kl_warmup < self.epochs):
            raise ValueError(f"--kl-warmup must be a number of epochs from 0 to less than --epochs, got {self.kl_warmup!r}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"--validation-fraction must be in [0, 1), got {self.validation_fraction!r}")
        if not isinstance(self.jit_compile, bool):
            raise ValueError(f"jit_compile must be True or False, got {self.jit_compile!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.loss not in PRESETS:
            raise ValueError(f"--loss must be one of {sorted(PRESETS)}, got {self.loss!r}")
        if not isinstance(self.data, str) or not self.data.strip():
            raise ValueError(f"--data must be auto, keras, sample or a folder, got {self.data!r}")
        check_memory(training_memory(self.batch_size, self.latent_dim),
                     f"training with --batch-size {self.batch_size} and --latent-dim {self.latent_dim}",
                     "lower --batch-size or --latent-dim")
        return self
