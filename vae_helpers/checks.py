"""Check cells for the write-it-yourself parts of the VAE notebooks.

Each ``check_*`` function runs a learner's code the way ``fit`` will on the backend Keras runs on: more
than once, with gradients, and compiled where fit compiles (a ``tf.function`` whose batch size is
unknown on TensorFlow, ``jax.jit`` on JAX; PyTorch runs eagerly). It compares the results with a
reference computed independently here, in NumPy and float64. Right code gets one line starting with
"✓ "; wrong code raises ``CheckFailed``, whose message names the mistake it recognised (wrong sign,
missing 1/2, frozen noise, ...) and says what to change. The same mistakes are named on every backend,
except where fit itself treats the code differently (``z.shape`` works inside JAX's and PyTorch's
steps; NumPy inside PyTorch's eager step fails on the gradient, not on the graph). In Jupyter a
``CheckFailed`` shows as that message and the line of the learner's code involved, not as a
traceback through this module.

The reference inputs are built afresh for every call, and Keras' global settings are restored after
the learner's code runs, so no answer can change what a later check compares against.
"""

import contextlib
import functools
import inspect
import itertools
import linecache
import os
import re
import textwrap
import warnings

import numpy as np

from vae_helpers._backend import BACKEND, keras, tf
from vae_helpers.evaluation import ACTIVE_THRESHOLD  # Burda et al. (2016): active when Var_x(E_q[z_j]) exceeds it

SEED = 1234
EPSILON = 1e-7  # the reference clips probabilities to [EPSILON, 1 - EPSILON]
STUB = "returned None: write the body (replace the `...`)"
KL_FORMULA = "0.5 * sum(exp(z_log_var) + z_mean**2 - 1 - z_log_var) over the last axis"
KL_FIX = f"Use {KL_FORMULA}, one value per example."
BCE_FIX = ("Use -sum(x * log(x_decoded) + (1 - x) * log(1 - x_decoded)) over the pixel axes (1, 2, 3), "
           "one value per example.")
ELBO_FIX = ("The loss is the mean over the batch of (BCE summed over the pixels + "
            f"{KL_FORMULA}).")
GRAPH_FIXES = {
    "tensorflow": ("fit runs your code as a compiled graph in which the batch size is unknown (None): use keras.ops "
                   "or TensorFlow functions on the tensors, keras.ops.shape(t) rather than t.shape, no NumPy and "
                   "no .numpy()."),
    "jax": ("fit compiles your code with jax.jit, where a tensor has no value yet: use keras.ops on the tensors, no "
            "NumPy, no .numpy(), float() or Python if on a tensor."),
    "torch": ("fit runs your code on tensors that carry gradients: use keras.ops on them, no NumPy and no .numpy() "
              "(NumPy cannot follow a gradient)."),
}
GRAPH_FIX = GRAPH_FIXES[BACKEND]
# What a passing check ran, as fit runs a training step on this backend.
PASSED_AS_FIT = {"tensorflow": "compiled with an unknown batch size", "jax": "compiled with jax.jit",
                 "torch": "run with gradients on, as fit runs it"}[BACKEND]
# How fit runs a training step on this backend, for "works when called directly but not <AS_FIT>".
AS_FIT = " with gradients on, as fit runs it" if BACKEND == "torch" else " inside a compiled function, as fit runs it"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class CheckFailed(AssertionError):
    """A check found a mistake; the message names it and says what to change.

    In IPython and Jupyter it is shown as its message plus the line of the learner's code involved
    (``_render_traceback_``), at most about eight lines, instead of a traceback through this module.
    """

    where = None  # "Cell In[5], line 3: <source>", set by the check when it knows the learner's line

    def _render_traceback_(self):
        red, reset = "\x1b[0;31m", "\x1b[0m"
        lines = textwrap.wrap(str(self), width=110, break_long_words=False, break_on_hyphens=False) or [""]
        if len(lines) > 6:
            lines = lines[:5] + [lines[5] + " ..."]
        shown = [f"{red}✗ CheckFailed:{reset} {lines[0]}"] + [f"  {line}" for line in lines[1:]]
        where = self.where or _learner_line(self.__cause__)
        if where:
            shown.append(f"  → your code, {where}")
        return shown


def _is_learner_file(filename):
    """A frame of the learner's code: not this package, not a library, not Python itself."""
    if not filename or filename.startswith("<frozen") or "__autograph_generated" in filename:
        return False
    path = os.path.abspath(filename)
    return not (path.startswith(_PACKAGE_DIR) or "site-packages" in path or "dist-packages" in path
                or os.sep + "lib" + os.sep + "python" in path)


def _cell_name(filename):
    """IPython's "Cell In[n]" for a notebook cell's file, else the file name."""
    try:
        from IPython import get_ipython
        number = get_ipython().compile._filename_map[filename]
        return f"Cell In[{number}]"
    except Exception:  # not in IPython, or a file that is not a cell
        return os.path.basename(filename)


def _location(filename, lineno):
    source = linecache.getline(filename, lineno).strip()
    return f"{_cell_name(filename)}, line {lineno}" + (f": {source}" if source else "")


def _learner_line(err):
    """The deepest line of learner code in ``err``'s traceback, as "Cell In[n], line k: source" (for an error
    raised in a compiled function, from the traced source that TensorFlow lists in the message)."""
    tb, found = getattr(err, "__traceback__", None), None
    while tb is not None:
        if _is_learner_file(tb.tb_frame.f_code.co_filename):
            found = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    if err is not None and "in user code:" in str(err):
        traced = [(path, int(line)) for path, line in re.findall(r'File "([^"]+)", line (\d+)', str(err))
                  if _is_learner_file(path)]
        found = traced[-1] if traced else found
    return _location(*found) if found else None


def _definition(code):
    """Where a learner's function or class is defined, as "Cell In[n], line k: def ..."."""
    target = getattr(code, "__func__", code)
    function = getattr(target, "__code__", None)
    if function is None and isinstance(target, type):
        for attribute in ("train_step", "compute_loss", "call"):
            method = target.__dict__.get(attribute)
            if getattr(method, "__code__", None) is not None:
                function = method.__code__
                break
    if function is None or not _is_learner_file(function.co_filename):
        return None
    return _location(function.co_filename, function.co_firstlineno)


def _fail(message, code=None):
    """A CheckFailed that points at the definition of ``code`` (the learner's function or class)."""
    err = CheckFailed(message)
    err.where = _definition(code) if code is not None else None
    return err


# Mistakes the checks can recognise: phrases that complete "<your function> ...".
SIGN = "has the wrong sign (it can never be negative)"
NO_HALF = "is missing the factor 1/2 (twice the right value)"
MEAN_DIMS = "takes the mean over the latent dimensions instead of the sum over the latent dimensions"
LOG_SIGMA = ("treats z_log_var as log-sigma, the book's convention (it is a log-variance: the variance "
             "is exp(z_log_var), not exp(2 * z_log_var))")
NO_MINUS_ONE = "is missing the -1 inside the sum"
BATCH_MEAN = "returns the mean over the batch (one number) instead of one value per example"
BATCH_SUM = "is summed over the batch instead of averaged (batch size times too large)"
BATCH_SUM_PER_EXAMPLE = "is summed over the batch (one number) instead of one value per example"
PIXEL_MEAN = ("takes the mean over the 784 pixels instead of the sum (the book's per-pixel mean: the "
              "reconstruction then weighs 784 times too little against the KL; keras.losses.binary_crossentropy "
              "averages over the last axis, so on flattened (batch, 784) images it gives this mean, while on "
              "(batch, 28, 28, 1) images it gives one value per pixel to sum over axes (1, 2))")
SWAPPED = "has its arguments swapped (the target x comes first, the probabilities x_decoded second)"
LOG2 = "uses log base 2 instead of the natural log (nats need keras.ops.log)"
NO_SECOND_TERM = "is missing the (1 - x) * log(1 - x_decoded) term"
KL_MISSING = "leaves out the KL term"
KL_SIGN = "subtracts the KL term instead of adding it (the KL has the wrong sign)"
KL_NO_HALF = "is missing the factor 1/2 in the KL"
KL_LOG_SIGMA = "computes the KL as if z_log_var were log-sigma (the book's convention)"
KL_MEAN_DIMS = ("averages the KL over the latent dimensions (a KL weight of 1/latent_dim, as in the book's "
                "2nd and 3rd editions): sum it")
KL_HALF_OR_MEAN_DIMS = ("weights the KL by 1/2: either it averages the KL over the 2 latent dimensions (a KL weight of "
                        "1/latent_dim, as in the book's 2nd and 3rd editions) or the 1/2 is applied twice. The KL enters "
                        "the loss whole, summed over the latent dimensions")
KL_BOOK_BETA = "weights the KL by the book's beta = 0.784 / latent_dim instead of 1"
BOOK_LOSS = ("is the 1st edition's loss: the per-pixel mean cross-entropy plus 5e-4 times the mean KL "
             "bracket, which is the ELBO divided by 784 with the KL weighted by 0.784 / latent_dim. Sum the "
             "cross-entropy over the pixels and add the whole KL (weight 1)")


# Shared helpers ---------------------------------------------------------------------------------

def _name(fn):
    name = getattr(fn, "__name__", "")
    return name if name.isidentifier() else "your function"


def _cut(text, limit):
    """``text`` cut to at most ``limit`` characters at a word boundary, with "..." where it was cut."""
    text = text.strip()
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0].rstrip(".,;:") + " ..."


PYTHON_ON_TENSOR = ("uses a Python if, for, max, any or bool() on a tensor: inside fit's compiled graph a tensor has "
                    "no value yet. Use keras.ops (keras.ops.maximum, keras.ops.where, keras.ops.sum) instead")


def _brief(err):
    """The line of an exception's message that says what went wrong (Keras wraps errors raised in layers,
    and TensorFlow's graph errors list the traced source before the message)."""
    if type(err).__name__ in ("OperatorNotAllowedInGraphError", "TracerBoolConversionError"):
        return f"{type(err).__name__}: it {PYTHON_ON_TENSOR}"
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).split("Arguments received by")[0]
    if text.lstrip().startswith("in user code:"):
        last = [line.strip() for line in text.splitlines() if line.strip()][-1]
        return _cut(re.sub(r"^\w+(Error|Exception): ", f"{type(err).__name__}: ", last), 240)
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith(("Exception encountered when calling", "Traceback",
                                                             "File ", "Detected at node", "Graph execution error"))]
    return f"{type(err).__name__}: {_cut((lines or [''])[0], 200)}"


def _settings():
    return {"floatx": keras.config.floatx(), "epsilon": keras.config.epsilon(),
            "image_data_format": keras.config.image_data_format()}


def _restore(name, before):
    """Put Keras' global settings back as ``before``; a CheckFailed naming any that the learner's code changed."""
    after = _settings()
    keras.config.set_floatx(before["floatx"])
    keras.config.set_epsilon(before["epsilon"])
    keras.config.set_image_data_format(before["image_data_format"])
    changed = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
    if not changed:
        return None
    what = ", ".join(f"{key} from {old!r} to {new!r}" for key, (old, new) in changed.items())
    return CheckFailed(f"{name} changed Keras' global settings ({what}); the check has put them back. Don't "
                       "call keras.config.set_... inside it: it would change every model in the notebook.")


@contextlib.contextmanager
def _guard(name):
    """Run learner code, then restore Keras' global settings; a change is a mistake with its own hint, reported
    before any error that the change caused."""
    before = _settings()
    try:
        yield
    except BaseException as err:
        changed = _restore(name, before)
        if changed is not None:
            raise changed from err
        raise
    changed = _restore(name, before)
    if changed is not None:
        raise changed


def _call(name, fn, *args, hint="", graph=False):
    """Run learner code; turn any exception into a short CheckFailed chained to the original."""
    try:
        with _guard(name):
            return fn(*args)
    except CheckFailed:
        raise
    except Exception as err:  # whatever the learner's code raises, report it briefly
        where = AS_FIT if graph else ""
        extra = f" {GRAPH_FIX}" if graph else ""
        raise CheckFailed(f"{name} raised {_brief(err)}{where}. {hint}{extra}".strip()) from err


def _array(name, value, code=None):
    """The learner's result as a float64 NumPy array (None means an unfilled stub)."""
    if value is None:
        raise _fail(f"{name} {STUB}.", code)
    dtype = getattr(value, "dtype", None)
    dtype = None if dtype is None else keras.backend.standardize_dtype(dtype)
    if dtype is not None and not dtype.startswith(("float", "bfloat")):
        raise _fail(f"{name} returned values of type {dtype}; it must return floating-point numbers (a "
                    "comparison such as > gives booleans, and integers cannot carry a gradient).", code)
    try:
        return np.asarray(keras.ops.convert_to_numpy(value) if keras.ops.is_tensor(value) else value, np.float64)
    except Exception as err:
        raise _fail(f"{name} returned a {type(value).__name__}, not a tensor of numbers.", code) from err


def _join(mistakes):
    return mistakes[0] if len(mistakes) == 1 else ", ".join(mistakes[:-1]) + " and " + mistakes[-1]


def _match(got, variants, rtol=1e-4, atol=1e-5):
    """The mistakes of the first variant whose values equal ``got`` (``()`` = right), or None."""
    for mistakes, expected in variants:
        if np.shape(got) == np.shape(expected) and np.allclose(got, expected, rtol=rtol, atol=atol):
            return mistakes
    return None


def _variants(build, *families):
    """Every combination of one choice per family (dicts {mistakes: choice}) as (mistakes, build(*choices)),
    the right one (no mistakes) first."""
    combos = itertools.product(*(family.items() for family in families))
    variants = [(sum((m for m, _ in combo), ()), build(*(c for _, c in combo))) for combo in combos]
    return sorted(variants, key=lambda v: len(v[0]))


def _per_example_check(name, got, variants, fix, n, code=None):
    """Compare a per-example result with its variants; also recognise a batch sum or mean."""
    if got.size == 1 and n > 1:
        scalar = [(m + (BATCH_MEAN,), v.mean()) for m, v in variants]
        scalar += [(m + (BATCH_SUM_PER_EXAMPLE,), v.sum()) for m, v in variants]
        mistakes = _match(got.reshape(()), scalar)
        if mistakes is None:
            raise _fail(f"{name} returned one number for the whole batch: it must return one value "
                        f"per example, shape ({n},). {fix}", code)
        raise _fail(f"{name} {_join(mistakes)}, shape ({n},). {fix}", code)
    if got.shape != (n,):
        why = " (a trailing axis of size 1 would broadcast wrongly later)" if got.shape == (n, 1) else ""
        raise _fail(f"{name} returned shape {got.shape}, expected one value per example, shape ({n},)"
                    f"{why}. {fix}", code)
    mistakes = _match(got, variants)
    if mistakes:
        raise _fail(f"{name} {_join(mistakes)}. {fix}", code)
    if mistakes is None:
        i = int(np.argmax(~np.isclose(got, variants[0][1], rtol=1e-4, atol=1e-5)))
        raise _fail(f"{name} gives {got[i]:.5g} for example {i} where {variants[0][1][i]:.5g} is expected. {fix}",
                    code)


def _specs(arrays):
    """Input signatures with an unknown batch size, as inside a Keras model (TensorFlow)."""
    return [tf.TensorSpec((None, *np.shape(a)[1:]), tf.float32) for a in arrays]


def _tensor(array):
    """A float32 tensor of this backend, for a direct call of the learner's code."""
    return keras.ops.convert_to_tensor(np.asarray(array, np.float32))


def _floating(value):
    return keras.ops.is_tensor(value) and keras.backend.standardize_dtype(value.dtype).startswith(("float", "bfloat"))


def _tensorflow_step(fn, arrays, layer=None):
    """TensorFlow: one ``tf.function`` with an unknown batch size, differentiated with a ``GradientTape``."""
    def step(*inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            value = fn(*inputs)
            total = tf.reduce_sum(tf.cast(value, tf.float32)) if _floating(value) else None
        if total is None:
            return value, [None] * len(inputs)
        return value, tape.gradient(total, list(inputs))

    compiled = tf.function(step, input_signature=_specs(arrays), autograph=False)
    return lambda: compiled(*map(tf.constant, arrays))


def _jax_step(fn, arrays, layer=None):
    """JAX: ``jax.jit`` of ``jax.value_and_grad``, as Keras' JAX trainer compiles a step. A ``layer`` (``fn`` itself)
    runs through ``stateless_call``, its state (a SeedGenerator's) passed in and the new state assigned after."""
    import jax  # noqa: PLC0415  (the backend's own module, only on JAX)

    floating, state = [], [] if layer is None else layer.non_trainable_variables

    def total(values, *inputs):
        if layer is None:
            value = fn(*inputs)
        else:
            value, values = layer.stateless_call([v.value for v in layer.trainable_variables], values, *inputs)
        floating.append(_floating(value))
        summed = keras.ops.sum(keras.ops.cast(value, "float32")) if floating[-1] else keras.ops.zeros(())
        return summed, (value, values)

    compiled = jax.jit(jax.value_and_grad(total, argnums=tuple(range(1, len(arrays) + 1)), has_aux=True))

    def call():
        (_, (value, values)), grads = compiled([v.value for v in state], *map(keras.ops.convert_to_tensor, arrays))
        for variable, new in zip(state, values):
            variable.assign(new)
        return value, list(grads) if floating[-1] else [None] * len(arrays)
    return call


def _torch_step(fn, arrays, layer=None):
    """PyTorch: an eager call on tensors that carry gradients, as Keras' torch trainer runs a step."""
    import torch  # noqa: PLC0415  (the backend's own module, only on PyTorch)

    def call():
        inputs = [keras.ops.convert_to_tensor(a).requires_grad_(True) for a in arrays]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Converting a tensor that requires grad to a Python scalar"
            value = fn(*inputs)
        if not (_floating(value) and value.requires_grad):
            return value, [None] * len(inputs)
        return value, list(torch.autograd.grad(value.float().sum(), inputs, allow_unused=True))
    return call


_STEPS = {"tensorflow": _tensorflow_step, "jax": _jax_step, "torch": _torch_step}


def _as_fit_with_gradients(name, fn, arrays, hint, calls=2, layer=None):
    """Call ``fn`` ``calls`` times the way fit runs a training step on this backend (compiled with an unknown batch
    size on TensorFlow, ``jax.jit`` on JAX, eagerly with gradients on PyTorch); return each call's (value, gradients
    of its sum with respect to every input) as NumPy (None where no gradient)."""
    step = _STEPS[BACKEND](fn, arrays, layer)
    results = []
    for _ in range(calls):
        value, grads = _call(name, step, hint=hint, graph=True)
        results.append((_array(name, value, getattr(fn, "fn", fn)),
                        [None if g is None else keras.ops.convert_to_numpy(g).astype(np.float64) for g in grads]))
    return results


def _check_compiled_value(name, fn, arrays, eager, hint, fix):
    """Inside a compiled function: the same value as eagerly, on every call; returns the last gradients."""
    for value, grads in _as_fit_with_gradients(name, fn, arrays, hint):
        if value.shape != eager.shape or not np.allclose(value, eager, rtol=1e-4, atol=1e-5):
            raise _fail(f"{name} gives other values{AS_FIT}, than when called directly: something in it is fixed "
                        f"when the step is traced, or kept between calls. {GRAPH_FIX} {fix}", fn)
    return grads


def _check_gradients(name, grads, expected, labels, code, what="gives the right values", atol=1e-4):
    """Gradients of the summed result with respect to each input, against independent derivatives."""
    for grad, want, label in zip(grads, expected, labels):
        if grad is None or not np.any(grad):
            raise _fail(f"{name} {what} but no gradient flows back (no gradient reaches {label}): it is "
                        "computed outside keras.ops (NumPy, .numpy(), a Python float) or behind stop_gradient, so training could "
                        "not learn from it. Compute it with keras.ops from the tensors you receive.", code)
        if not np.allclose(grad, want, rtol=1e-3, atol=atol):
            raise _fail(f"{name} {what} but the wrong gradient with respect to {label} (is part of it computed "
                        "from a copy, a constant or stop_gradient?). Compute it with keras.ops from the tensors "
                        "you receive.", code)


# 1. Sampling ----------------------------------------------------------------------------------

def _sampling_inputs(n):
    """n copies of three (mean, log-variance) pairs, fresh arrays on every call."""
    mean = np.tile(np.array([0.5, -1.0, 2.0], np.float32), (n, 1))
    log_var = np.tile(np.array([-1.2, 0.6, 1.4], np.float32), (n, 1))
    return mean, log_var


# Spread of z - z_mean that a wrong scale rule produces, and what that rule is.
SCALE_RULES = [
    ("", lambda lv: np.exp(0.5 * lv)),
    ("uses sigma = exp(z_log_var): that is the book's convention, which treats z_log_var as log-sigma "
     "(or uses the variance as the std); the 1/2 is missing", np.exp),
    ("uses exp(2 * z_log_var), the square of the variance, as sigma", lambda lv: np.exp(2 * lv)),
    ("uses exp(-0.5 * z_log_var): the sign in the exponent is wrong", lambda lv: np.exp(-0.5 * lv)),
    ("multiplies the noise by z_log_var itself: the exp is missing", np.abs),
    ("multiplies the noise by 0.5 * z_log_var: the exp is missing", lambda lv: np.abs(0.5 * lv)),
]
SAMPLING_FIX = ("Use z = z_mean + keras.ops.exp(0.5 * z_log_var) * eps with "
                "eps = keras.random.normal(keras.ops.shape(z_mean), seed=seed).")
FROZEN_NOISE = ("gives the same z on every call: the noise is frozen. A fixed seed (seed=42, or stateless_normal "
                "with a constant seed) repeats the same eps, and NumPy noise is drawn once, when fit traces the "
                "graph, and then reused for every batch. Draw eps with keras.random.normal(keras.ops.shape(z_mean), "
                "seed=seed), passing on the keras.random.SeedGenerator you receive (in a model, its "
                "self.seed_generator).")


UNSEEDED_ON_JAX = ("draws its noise without a seed: inside fit, JAX compiles the step and can draw only seeded random "
                   "numbers. Give it a third argument, `def sample(z_mean, z_log_var, seed=None)`, and draw eps = "
                   "keras.random.normal(keras.ops.shape(z_mean), seed=seed): the check, like a model, passes a "
                   "keras.random.SeedGenerator, whose state moves on at every draw")


def _source(fn):
    """The source text of ``fn`` ("" when it has none, as for a class made by type() or a builtin)."""
    try:
        return inspect.getsource(fn)
    except (TypeError, OSError):
        return ""


def _takes_seed(fn):
    """Whether the learner's sampling function has a ``seed`` parameter (the 3rd edition's way: a SeedGenerator)."""
    try:
        return "seed" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class _Sampler(keras.layers.Layer):
    """The learner's sampling function inside a layer that owns its SeedGenerator, as in a model: on JAX fit threads
    the generator's state through its compiled step, which only a layer's own generator allows."""

    def __init__(self, fn, **kwargs):
        super().__init__(name="sampler", **kwargs)
        self.fn = fn
        self.seed_generator = keras.random.SeedGenerator(SEED) if _takes_seed(fn) else None

    def call(self, z_mean, z_log_var):
        if self.seed_generator is None:
            return self.fn(z_mean, z_log_var)
        return self.fn(z_mean, z_log_var, seed=self.seed_generator)

    def compute_output_spec(self, z_mean, z_log_var):
        return keras.KerasTensor(z_mean.shape, z_mean.dtype)


def check_sampling(fn, n=4096):
    """Check ``fn(z_mean, z_log_var) -> z`` draws z ~ N(z_mean, exp(z_log_var)) with gradients to both inputs.

    Uses n x 3 draws at fixed means and log-variances with tolerances of six standard errors, so the
    statistics cannot flake. Calls ``fn`` twice directly and twice more as fit runs a training step on
    this backend (on TensorFlow in two compiled functions, a known and an unknown batch size), so frozen
    noise and static shapes are found; it calls ``keras.utils.set_random_seed`` first, which reseeds the
    session. A ``fn(z_mean, z_log_var, seed=None)`` is given a ``keras.random.SeedGenerator`` as its seed, as
    a model's sampling layer would; on JAX that is the only way to draw noise inside fit.
    """
    name = _name(fn)
    hint = "It receives two float32 tensors of shape (batch, latent_dim); use keras.ops and keras.random on them."
    mean, log_var = _sampling_inputs(n)
    mu, lv = mean[0].astype(np.float64), log_var[0].astype(np.float64)
    keras.utils.set_random_seed(SEED)
    sampler = _Sampler(fn)
    inputs = [_tensor(mean), _tensor(log_var)]
    grads = None
    if BACKEND == "tensorflow":
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(inputs)
            z = _call(name, sampler, *inputs, hint=hint)
            total = tf.reduce_sum(z) if _floating(z) else None
        if total is not None:
            grads = [None if g is None else g.numpy() for g in tape.gradient(total, inputs)]
    else:
        z = _call(name, sampler, *inputs, hint=hint)
    values = _array(name, z, fn)
    if values.shape != (n, 3):
        raise _fail(f"{name} returned shape {values.shape}; z must have the shape of z_mean, ({n}, 3). "
                    f"{SAMPLING_FIX}", fn)
    if not np.all(np.isfinite(values)):
        raise _fail(f"{name} returned inf or NaN. {SAMPLING_FIX}", fn)
    noise = values - mu
    if np.allclose(noise, 0, atol=1e-6):
        raise _fail(f"{name} returned z_mean itself: no noise was added. {SAMPLING_FIX}", fn)
    again = _array(name, _call(name, sampler, *inputs, hint=hint), fn)
    if again.shape == values.shape and np.allclose(again, values):
        raise _fail(f"{name} {FROZEN_NOISE}", fn)
    if np.allclose(noise, noise[:1], atol=1e-6):
        raise _fail(f"{name} gives every example the same noise (one draw shared by the whole batch): "
                    "draw eps with the full shape keras.ops.shape(z_mean), not (latent_dim,) or (1, latent_dim).", fn)
    if np.all(np.abs(np.corrcoef(noise.T)[np.triu_indices(3, 1)]) > 0.999):
        raise _fail(f"{name} uses the same noise in every latent dimension (shared across columns): "
                    "draw eps with the full shape keras.ops.shape(z_mean), not (batch, 1).", fn)
    _check_sampling_statistics(name, fn, values, mu, lv, n)
    if BACKEND == "tensorflow":
        _check_sampling_gradients(name, fn, grads, noise)
        _check_sampling_compiled(name, sampler, hint)
    else:
        _check_sampling_as_fit(name, sampler, hint)
    print(f"✓ {name}: z ~ N(z_mean, exp(z_log_var)) on {n} x 3 draws (right mean and spread, fresh noise "
          f"per example, dimension and call, also {PASSED_AS_FIT}), gradients reach "
          "z_mean and z_log_var")


def _check_sampling_statistics(name, fn, values, mu, lv, n):
    """Centred on z_mean (or on z_log_var: swapped arguments), then the spread rule."""
    noise = values - mu
    spread = noise.std(axis=0)
    if np.any(np.abs(noise.mean(axis=0)) > 6 * spread / np.sqrt(n)):
        swapped = values - lv
        if np.all(np.abs(swapped.mean(axis=0)) < 6 * swapped.std(axis=0) / np.sqrt(n)):
            raise _fail(f"{name} has z_mean and z_log_var swapped: z is centred on z_log_var. The encoder's first "
                        f"output is z_mean, its second z_log_var. {SAMPLING_FIX}", fn)
        raise _fail(f"{name}: z is not centred on z_mean (mean of z - z_mean is {np.round(noise.mean(axis=0), 3)}); "
                    f"eps must have mean 0 (keras.random.normal, not uniform). {SAMPLING_FIX}", fn)
    tolerance = 6 / np.sqrt(2 * n)
    rule = next((text for text, scale in SCALE_RULES if np.all(np.abs(spread / scale(lv) - 1) < tolerance)), None)
    if rule is None:
        raise _fail(f"{name}: the spread of z - z_mean per dimension is {np.round(spread, 3)} but "
                    f"sigma = exp(0.5 * z_log_var) = {np.round(np.exp(0.5 * lv), 3)}. {SAMPLING_FIX}", fn)
    if rule:
        raise _fail(f"{name} {rule}. {SAMPLING_FIX}", fn)
    _check_standard_normal(name, noise / np.exp(0.5 * lv), fn)


def _check_sampling_gradients(name, fn, grads, noise):
    """``grads``: NumPy gradients of sum(z) with respect to (z_mean, z_log_var), None where none flows."""
    outside = (f"{name}: no gradient reaches {{}}, so the encoder could not learn: z was computed outside "
               "keras.ops (NumPy, .numpy()) or behind stop_gradient. Compute z with keras.ops from the tensors "
               "you receive.")
    if grads is None:
        raise _fail(outside.format("z_mean and z_log_var (z is not a tensor)"), fn)
    d_mean, d_log_var = grads
    if d_mean is None or not np.any(d_mean):
        raise _fail(outside.format("z_mean"), fn)
    if d_log_var is None or not np.any(d_log_var):
        raise _fail(outside.format("z_log_var"), fn)
    if not (np.allclose(d_mean, 1.0, rtol=1e-4, atol=1e-5)
            and np.allclose(d_log_var, 0.5 * noise, rtol=1e-3, atol=1e-4)):
        raise _fail(f"{name}: dz/dz_mean should be 1 and dz/dz_log_var 0.5 * sigma * eps; is eps itself "
                    f"computed from the inputs? {SAMPLING_FIX}", fn)


def _check_sampling_as_fit(name, sampler, hint):
    """JAX and PyTorch: twice as fit runs a step (``jax.jit`` threading the seed state; eagerly with gradients):
    fresh noise on each call, and the gradients of z."""
    mean, log_var = _sampling_inputs(64)
    try:
        results = _as_fit_with_gradients(name, sampler, (mean, log_var), hint, layer=sampler)
    except CheckFailed as err:
        if "only use seeded random ops" in str(err.__cause__):
            raise _fail(f"{name} {UNSEEDED_ON_JAX}.", sampler.fn) from None
        raise
    (first, grads), (second, _) = results
    _check_sampling_gradients(name, sampler.fn, grads, first - mean[0])
    if np.allclose(first, second):
        raise _fail(f"{name} works when called directly, but{AS_FIT} it {FROZEN_NOISE}", sampler.fn)


def _check_sampling_compiled(name, fn, hint):
    """TensorFlow, as fit runs it: twice per compiled function, first with a known batch size, then an unknown one."""
    code = getattr(fn, "fn", fn)  # the learner's function inside the _Sampler layer
    mean, log_var = _sampling_inputs(64)
    known = [tf.TensorSpec(mean.shape, tf.float32)] * 2

    def step(m, v):
        with tf.GradientTape() as tape:
            tape.watch([m, v])
            z = fn(m, v)
            total = tf.reduce_sum(z)
        return z, tape.gradient(total, [m, v])

    for signature in (known, _specs([mean, log_var])):
        compiled = tf.function(step, input_signature=signature, autograph=False)
        draws = []
        for _ in range(2):
            try:
                with _guard(name):
                    z, grads = compiled(tf.constant(mean), tf.constant(log_var))
            except CheckFailed:
                raise
            except Exception as err:
                static = signature is not known and "None" in str(err)
                why = (" It takes a static shape (z_mean.shape), whose batch size is None inside a model: use "
                       "keras.ops.shape(z_mean)." if static else "")
                raise CheckFailed(f"{name} works when called directly but raised {_brief(err)} inside a compiled "
                                  f"function, as in fit.{why} {GRAPH_FIX}") from err
            draws.append(z.numpy())
            if grads[0] is None or grads[1] is None:
                raise _fail(f"{name}: inside a compiled function no gradient reaches z_mean or z_log_var. "
                            f"{SAMPLING_FIX}", code)
        if np.allclose(draws[0], draws[1]):
            raise _fail(f"{name} works when called directly, but inside a compiled function (as in fit) it "
                        f"{FROZEN_NOISE}", code)


# 2. KL divergence -----------------------------------------------------------------------------

def _kl_inputs():
    """Six (z_mean, z_log_var) rows, fresh arrays on every call; the first is the prior itself (KL 0)."""
    mean = np.array([[0, 0, 0], [1, 0, 0], [0.5, -1, 2], [0, 0, 0], [-1.5, 0.3, 0.8], [0.2, 0.4, -0.6]], np.float32)
    log_var = np.array([[0, 0, 0], [0, 0, 0], [0, 0, 0], [-1, 0.5, 1], [0.7, -0.4, -2], [1.5, -1.2, 0.3]], np.float32)
    return mean, log_var


def _kl_variants(mu, lv):
    """(mistakes, per-example KL) for the right closed form (mistakes ``()``, first) and its usual slips."""
    mu, lv = np.asarray(mu, np.float64), np.asarray(lv, np.float64)
    terms = {(): np.exp(lv) + mu**2 - 1 - lv, (LOG_SIGMA,): np.exp(2 * lv) + mu**2 - 1 - 2 * lv,
             (NO_MINUS_ONE,): np.exp(lv) + mu**2 - lv}
    factors = {(): 0.5, (NO_HALF,): 1.0, (SIGN,): -0.5, (SIGN, NO_HALF): -1.0}
    return _variants(lambda t, reduce, f: f * reduce(t, axis=-1), terms, {(): np.sum, (MEAN_DIMS,): np.mean}, factors)


def _repeatable(name, fn, inputs, first, hint):
    """A second direct call on the same inputs must give the same values."""
    again = _array(name, _call(name, fn, *map(_tensor, inputs), hint=hint), fn)
    if again.shape != first.shape or not np.allclose(again, first, rtol=1e-5, atol=1e-6):
        raise _fail(f"{name} gives other values when called a second time on the same inputs: it must not keep "
                    "state (a cached value, a counter) between calls.", fn)


def check_kl_divergence(fn):
    """Check ``fn(z_mean, z_log_var)`` returns KL(N(z_mean, exp(z_log_var)) || N(0, I)) per example.

    Six fixed examples (the first is the prior itself, KL 0) are compared with the closed form and
    with its usual slips, so a wrong answer is named. The function is then run again, compiled with an
    unknown batch size, and its gradients are compared with the closed form's derivatives.
    """
    name = _name(fn)
    hint = "It receives two float32 tensors of shape (batch, latent_dim)."
    mean, log_var = _kl_inputs()
    variants = _kl_variants(mean, log_var)
    got = _array(name, _call(name, fn, _tensor(mean), _tensor(log_var), hint=hint), fn)
    _per_example_check(name, got, variants, KL_FIX, len(mean), fn)
    _repeatable(name, fn, (mean, log_var), got, hint)
    grads = _check_compiled_value(name, fn, (mean, log_var), got, hint, KL_FIX)
    mu, lv = mean.astype(np.float64), log_var.astype(np.float64)
    _check_gradients(name, grads, [mu, 0.5 * (np.exp(lv) - 1)], ["z_mean", "z_log_var"], fn)
    print(f"✓ {name}: matches the closed form on {len(mean)} test cases, per example, shape ({len(mean)},), "
          f"also {PASSED_AS_FIT}, with the right gradients")


# 3. Reconstruction loss -----------------------------------------------------------------------

def _recon_inputs():
    """Four soft-target images (grey pixels and near-black/white ones) and interior probabilities."""
    rng = np.random.default_rng(7)
    shape = (28, 28, 1)
    x = np.stack([np.where(rng.uniform(size=shape) < 0.3, 0.98, 0.02), rng.uniform(0.02, 0.98, shape),
                  np.full(shape, 0.5), np.where(rng.uniform(size=shape) < 0.5, 0.95, 0.05)])
    p = rng.uniform(0.05, 0.95, x.shape)
    p[3] = np.clip(x[3] + rng.normal(0, 0.05, shape), 0.01, 0.99)
    return x.astype(np.float32), p.astype(np.float32)


def _bce_variants(x, p):
    """(mistakes, per-example loss) for binary cross-entropy summed over pixels (first) and its slips."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    p = np.clip(np.asarray(p, np.float64).reshape(len(p), -1), EPSILON, 1 - EPSILON)
    xc = np.clip(x, EPSILON, 1 - EPSILON)  # swapped arguments: x is then clipped like probabilities
    terms = {(): -(x * np.log(p) + (1 - x) * np.log(1 - p)), (SWAPPED,): -(p * np.log(xc) + (1 - p) * np.log(1 - xc)),
             (NO_SECOND_TERM,): -x * np.log(p)}
    factors = {(): 1.0, (LOG2,): 1 / np.log(2), (SIGN,): -1.0, (SIGN, LOG2): -1 / np.log(2)}
    return _variants(lambda t, reduce, f: f * reduce(t, axis=-1), terms, {(): np.sum, (PIXEL_MEAN,): np.mean}, factors)


def _bce_gradient(x, p):
    """d/dp of the summed binary cross-entropy, for probabilities inside the clipping range."""
    x, p = np.asarray(x, np.float64), np.asarray(p, np.float64)
    return -(x / p - (1 - x) / (1 - p))


def check_reconstruction_loss(fn):
    """Check ``fn(x, x_decoded)`` is the binary cross-entropy summed over the 784 pixels, in nats per example.

    Fixed grey and near-binary images find the usual slips; a case with probabilities of exactly 0
    and 1 checks that x_decoded is clipped before the log. The function is then run again, compiled
    with an unknown batch size, and its gradient with respect to x_decoded is compared with the
    derivative of the cross-entropy.
    """
    name = _name(fn)
    hint = "It receives x and x_decoded as float32 tensors of shape (batch, 28, 28, 1)."
    x, p = _recon_inputs()
    variants = _bce_variants(x, p)
    got = _array(name, _call(name, fn, _tensor(x), _tensor(p), hint=hint), fn)
    if got.ndim > 1 and got.shape[0] == len(x) and got.size > len(x):
        raise _fail(f"{name} returned one value per pixel (shape {got.shape}) instead of one per example: "
                    f"sum over the pixel axes. {BCE_FIX}", fn)
    _per_example_check(name, got, variants, BCE_FIX, len(x), fn)
    _repeatable(name, fn, (x, p), got, hint)
    binary = (np.random.default_rng(8).uniform(size=(2, 28, 28, 1)) < 0.3).astype(np.float32)
    extreme = binary.copy()
    extreme[1, :2] = 1 - extreme[1, :2]  # 56 confidently wrong pixels
    edge = _array(name, _call(name, fn, _tensor(binary), _tensor(extreme), hint=hint), fn).reshape(-1)
    if not np.all(np.isfinite(edge)):
        raise _fail(f"{name} gives inf or NaN when x_decoded is exactly 0 or 1 (log(0)): clip x_decoded "
                    f"to [1e-7, 1 - 1e-7] before the log (keras.ops.clip).", fn)
    if abs(edge[0]) > 0.1:
        raise _fail(f"{name} gives {edge[0]:.4g} nats for a perfect reconstruction (x_decoded == x, "
                    "pixels exactly 0 or 1) where about 0 is expected: clip with a small epsilon, 1e-7.", fn)
    grads = _check_compiled_value(name, fn, (x, p), got, hint, BCE_FIX)
    _check_gradients(name, grads[1:], [_bce_gradient(x, p)], ["x_decoded"], fn)
    print(f"✓ {name}: binary cross-entropy summed over the 784 pixels on {len(x)} test images, per example, "
          f"shape ({len(x)},), finite when x_decoded is exactly 0 or 1, also "
          f"{'compiled' if BACKEND == 'tensorflow' else PASSED_AS_FIT}, with the right gradient")


# 4. The custom loss layer ---------------------------------------------------------------------

def _elbo_variants(recon, kl, kl_log_sigma, latent_dim):
    """(mistakes, scalar) for the batch-mean negative ELBO (first) and its usual slips, the book's loss among them."""
    kls = {(): kl, (KL_MISSING,): 0 * kl, (KL_SIGN,): -kl, (KL_NO_HALF,): 2 * kl, (KL_LOG_SIGMA,): kl_log_sigma,
           (KL_MEAN_DIMS if latent_dim != 2 else KL_HALF_OR_MEAN_DIMS,): kl / latent_dim,
           (KL_BOOK_BETA,): 0.784 / latent_dim * kl}
    variants = _variants(lambda r, k, reduce: reduce(r + k), {(): recon, (PIXEL_MEAN,): recon / 784}, kls,
                         {(): np.mean, (BATCH_SUM,): np.sum})
    return variants + [((BOOK_LOSS,), np.mean(recon / 784 + 1e-3 / latent_dim * kl))]


def _loss_layer_batch(seed):
    """Four binary images, probabilities, 2-D posteriors, and the loss variants for them."""
    rng = np.random.default_rng(seed)
    x = (rng.uniform(size=(4, 28, 28, 1)) < 0.3).astype(np.float32)
    p = rng.uniform(0.05, 0.95, x.shape).astype(np.float32)
    mu, lv = 3 * rng.normal(size=(4, 2)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)
    recon = _bce_variants(x, p)[0][1]
    kl = _kl_variants(mu, lv)[0][1]
    kl_log_sigma = next(v for m, v in _kl_variants(mu, lv) if m == (LOG_SIGMA,))
    return (x, p, mu, lv), _elbo_variants(recon, kl, kl_log_sigma, latent_dim=2)


def _check_loss_value(name, total, variants, terms="", code=None):
    mistakes = _match(total, variants)
    if mistakes is None:
        raise _fail(f"{name}: the loss is {total:.5g}{terms} but {variants[0][1]:.5g} is expected. {ELBO_FIX}", code)
    if mistakes:
        raise _fail(f"{name}: the loss{terms} {_join(mistakes)}. {ELBO_FIX}", code)


def _check_loss_layer_call(name, layer, inputs, variants, code):
    """One call of the layer: returns x_decoded unchanged and adds the right loss; returns its value."""
    x_decoded = inputs[1]
    out = _call(name, layer, *map(_tensor, inputs),
                hint="The check calls layer(x, x_decoded, z_mean, z_log_var) with four float32 tensors.")
    added = [_array(name, loss, code) for loss in layer.losses]
    if out is None and not added:
        raise _fail(f"{name}.call {STUB}; add the loss with self.add_loss(...) and return x_decoded.", code)
    if not added:
        got = "returned the loss instead of adding it" if np.size(_array(name, out)) == 1 else "added no loss"
        raise _fail(f"{name} {got}: call self.add_loss(loss) inside call, then return x_decoded. {ELBO_FIX}", code)
    if out is None or _array(name, out).shape != x_decoded.shape or not np.allclose(_array(name, out), x_decoded):
        what = ("None" if out is None else "one number (the loss?)" if np.size(_array(name, out)) == 1
                else f"something else (shape {_array(name, out).shape})")
        raise _fail(f"{name} returned {what}: call must end with `return x_decoded`, unchanged.", code)
    if any(loss.size != 1 for loss in added):
        shapes = [loss.shape for loss in added]
        raise _fail(f"{name} added a loss of shape {shapes[0] if len(shapes) == 1 else shapes}, not one "
                    f"number: average the per-example loss over the batch (keras.ops.mean). {ELBO_FIX}", code)
    if len(added) > 2:
        raise _fail(f"{name} added {len(added)} losses ({[round(float(v), 3) for v in added]}): add one "
                    f"loss (or reconstruction and KL as two) per call. {ELBO_FIX}", code)
    total = float(sum(float(v) for v in added))
    terms = "" if len(added) == 1 else f" (the sum of the two losses you added, {float(added[0]):.4g} and " \
                                       f"{float(added[1]):.4g})"
    _check_loss_value(name, total, variants, terms, code)
    return total, len(added)


def _added_losses(layer):
    """``layer(*inputs)`` -> the sum of the losses it added, the way fit collects them on this backend (on JAX
    through ``stateless_call``, since a jitted step cannot keep tensors on the layer)."""
    if BACKEND != "jax":
        def total(*inputs):
            layer(*inputs)
            return sum(keras.ops.sum(keras.ops.cast(loss, "float32")) for loss in layer.losses)
        return total

    def stateless_total(*inputs):
        _, _, added = layer.stateless_call([v.value for v in layer.trainable_variables],
                                           [v.value for v in layer.non_trainable_variables], *inputs, return_losses=True)
        return sum(keras.ops.sum(keras.ops.cast(loss, "float32")) for loss in added)
    return stateless_total


def _check_loss_layer_compiled(name, layer, code):
    """Twice, as fit runs it (compiled with an unknown batch size on TensorFlow): the added loss and its gradients."""
    (x, p, mu, lv), variants = _loss_layer_batch(13)
    total = _added_losses(layer)
    total.__name__ = name
    results = _as_fit_with_gradients(name, total, (x, p, mu, lv),
                                     hint="The check calls layer(x, x_decoded, z_mean, z_log_var) as fit does.")
    for value, grads in results:
        _check_loss_value(name, float(value.reshape(())), variants, AS_FIT, code)
    batch = len(x)
    expected = [_bce_gradient(x, p) / batch, mu.astype(np.float64) / batch,
                0.5 * (np.exp(lv.astype(np.float64)) - 1) / batch]
    _check_gradients(name, grads[1:], expected, ["x_decoded", "z_mean", "z_log_var"], code,
                     what="adds the right number", atol=1e-6)


def check_vae_loss_layer(layer_class):
    """Check a custom loss layer: ``layer_class()(x, x_decoded, z_mean, z_log_var)`` adds the batch-mean
    negative ELBO with ``add_loss`` (one loss, or reconstruction and KL as two that sum to it) and
    returns x_decoded unchanged. A second call must replace, not accumulate, the loss; inside a compiled
    function with an unknown batch size the loss must be the same and have the right gradients.
    """
    name = getattr(layer_class, "__name__", "your layer")
    if isinstance(layer_class, keras.layers.Layer):
        raise CheckFailed(f"pass the layer class itself, e.g. check_vae_loss_layer({type(layer_class).__name__}), "
                          "not an instance.")
    layer = _call(name, layer_class, hint="The check creates the layer with no arguments.")
    if layer is None or not callable(layer):
        raise CheckFailed(f"{name}() did not give a Keras layer: pass the class itself, e.g. check(VAELossLayer).")
    for seed in (11, 12):  # the second call, on other numbers, must not see the first call's loss
        inputs, variants = _loss_layer_batch(seed)
        value, count = _check_loss_layer_call(name, layer, inputs, variants, layer_class)
    _check_loss_layer_compiled(name, layer, layer_class)
    terms = "one loss equal to" if count == 1 else "two losses that sum to"
    print(f"✓ {name}: adds {terms} the batch mean of reconstruction + KL ({value:.2f} nats on the test batch), "
          "returns x_decoded unchanged, replaces the loss on each call, and the loss has the right gradients "
          f"{'inside a compiled function' if BACKEND == 'tensorflow' else PASSED_AS_FIT}")


# 5. train_step --------------------------------------------------------------------------------

# A batch size and a learning rate nobody hard-codes (a loss divided by a constant 64, or weights moved by a
# hand-written 0.01 * gradient, must not pass), and 600 draws of noise, enough to tell a normal from other shapes.
LATENT_DIM, BATCH, STEPS, LEARNING_RATE = 2, 150, 2, 0.0137
_SLOTS = 4  # decoder calls recorded; more than STEPS means the decoder ran more than once per step


class _RecordCodes(keras.layers.Layer):
    """The decoder's first layer in ``check_train_step``: passes z on and keeps a copy of each call's z,
    so the check sees the codes the learner's step really decoded, inside fit's compiled graph."""

    def build(self, input_shape):
        self.codes = self.add_weight(shape=(_SLOTS, BATCH, LATENT_DIM), initializer="zeros", trainable=False,
                                     name="codes")
        self.count = self.add_weight(shape=(), initializer="zeros", trainable=False, name="count")

    def call(self, z):
        slot = keras.ops.one_hot(keras.ops.cast(keras.ops.minimum(self.count, _SLOTS - 1), "int32"), _SLOTS)
        slot = keras.ops.reshape(slot, (_SLOTS, 1, 1))
        update = keras.ops.reshape(keras.ops.cast(z, "float32"), (1, BATCH, LATENT_DIM))
        self.codes.assign(self.codes * (1.0 - slot) + slot * update)
        self.count.assign(self.count + 1.0)
        return z

    def compute_output_shape(self, input_shape):
        return input_shape


def _tiny_vae_parts():
    """A tiny encoder (both heads trainable, log-variances near -1 and +1 so that sigma matters) and a decoder
    that records its input codes; their trainable weights in the order of ``_reference_step``; binary images."""
    rng = np.random.default_rng(5)
    layers = keras.layers
    hidden, mean_head, log_var_head = layers.Dense(8, "relu"), layers.Dense(LATENT_DIM), layers.Dense(LATENT_DIM)
    pixels, recorder = layers.Dense(784, "sigmoid"), _RecordCodes()
    images, codes = keras.Input((28, 28, 1)), keras.Input((LATENT_DIM,))
    features = hidden(layers.Flatten()(images))
    encoder = keras.Model(images, [mean_head(features), log_var_head(features)], name="encoder")
    decoder = keras.Model(codes, layers.Reshape((28, 28, 1))(pixels(recorder(codes))), name="decoder")
    weights = [w for layer in (hidden, mean_head, log_var_head, pixels) for w in (layer.kernel, layer.bias)]
    scales = [0.1, 0.1, 0.3, 0.1, 0.1, 0.0, 0.3, 0.3]
    for w, scale in zip(weights, scales):
        w.assign(rng.normal(0, scale, w.shape).astype(np.float32))
    log_var_head.bias.assign(np.array([-1.0, 1.0], np.float32))
    x = (rng.uniform(size=(BATCH, 28, 28, 1)) < 0.3).astype(np.float32)
    return encoder, decoder, recorder, weights, x


def _posterior64(weights, x):
    """Our own float64 encoder: (z_mean, z_log_var) for the batch ``x``."""
    w = [np.asarray(v, np.float64) for v in weights]
    h = np.maximum(x.reshape(len(x), -1).astype(np.float64) @ w[0] + w[1], 0)
    return h @ w[2] + w[3], h @ w[4] + w[5]


def _reference_step(weights, x, eps):
    """Per-example reconstruction and KL (float64), the gradient of the mean negative ELBO with the noise
    ``eps`` and that of the mean reconstruction alone: our own forward pass and backpropagation, in NumPy."""
    w = [np.asarray(v, np.float64) for v in weights]
    n, xs = len(x), x.reshape(len(x), -1).astype(np.float64)
    pre = xs @ w[0] + w[1]
    h = np.maximum(pre, 0)
    mu, lv = h @ w[2] + w[3], h @ w[4] + w[5]
    sigma = np.exp(0.5 * lv)
    z = mu + sigma * eps
    p = 1 / (1 + np.exp(-(z @ w[6] + w[7])))
    recon = -np.sum(xs * np.log(p) + (1 - xs) * np.log(1 - p), axis=-1)
    kl = 0.5 * np.sum(np.exp(lv) + mu**2 - 1 - lv, axis=-1)
    kl_log_sigma = 0.5 * np.sum(np.exp(2 * lv) + mu**2 - 1 - 2 * lv, axis=-1)

    def backward(with_kl):
        d_logits = (p - xs) / n  # d(mean cross-entropy)/d(logits) of a sigmoid output
        d_z = d_logits @ w[6].T
        d_mu = d_z + (mu / n if with_kl else 0)
        d_lv = d_z * 0.5 * sigma * eps + (0.5 * (np.exp(lv) - 1) / n if with_kl else 0)
        d_pre = (d_mu @ w[2].T + d_lv @ w[4].T) * (pre > 0)
        return [xs.T @ d_pre, d_pre.sum(0), h.T @ d_mu, d_mu.sum(0), h.T @ d_lv, d_lv.sum(0),
                z.T @ d_logits, d_logits.sum(0)]

    return recon, kl, kl_log_sigma, backward(True), backward(False)


class _BadReturn(Exception):
    pass


def _probe_class(model_class):
    """A subclass that notices train_step or compute_loss returning None (an unfilled stub) or
    train_step returning something other than a dict."""
    def not_none(method):
        def wrapper(self, *args, **kwargs):
            result = getattr(super(Probe, self), method)(*args, **kwargs)
            if result is None:
                raise _BadReturn(f"{method} {STUB}")
            logs = result[0] if BACKEND == "jax" and method == "train_step" and isinstance(result, tuple) else result
            if method == "train_step" and not isinstance(logs, dict):  # on JAX train_step returns (logs, state)
                what = "a tensor" if keras.ops.is_tensor(result) else f"a {type(result).__name__}"
                raise _BadReturn(f"train_step returned {what}, not a dict")
            return result
        return wrapper
    Probe = type(model_class.__name__, (model_class,), {m: not_none(m) for m in ("train_step", "compute_loss")})
    return Probe


class _StepRecorder(keras.callbacks.Callback):
    """What each step returned and the weights after it (fit's epoch history may show its own loss tracker)."""

    def __init__(self, variables):
        super().__init__()
        self.variables, self.logs, self.weights = variables, [], []

    def on_train_batch_end(self, batch, logs=None):
        self.logs.append(logs)
        _ = self.model  # on JAX, reading the model brings its variables up to date with the compiled step
        self.weights.append([keras.ops.convert_to_numpy(v) for v in self.variables])


IN_THE_STEP = {"tensorflow": "inside the GradientTape (or in compute_loss)",
               "jax": "inside the function jax.value_and_grad differentiates (or in compute_loss)",
               "torch": "before loss.backward() (or in compute_loss)"}[BACKEND]
RETURN_FIX = {"compute_loss": "return the loss, one number: keras.ops.mean of the per-example loss",
              "train_step": {"tensorflow": "return a dict such as {m.name: m.result() for m in self.metrics}",
                             "jax": "return (logs, state): a dict of the metrics' results and the new state",
                             "torch": "return a dict such as {m.name: m.result() for m in self.metrics}"}[BACKEND]}
UNSEEDED_IN_MODEL = ("draws its noise without a seed: inside fit, JAX compiles the step and can draw only seeded random "
                     "numbers. Create the generator once, `self.seed_generator = keras.random.SeedGenerator()` in "
                     "__init__, and draw with seed=self.seed_generator (sample(z_mean, z_log_var, self.seed_generator)): "
                     "fit then carries its state from step to step.")
METRIC_IN_LAYER = ("fit raised 'NoneType' object is not callable, which on JAX means a metric was updated inside a "
                   "layer's call: update metrics in the model's compute_loss (or train_step), not in a layer's call.")
NO_GRADIENTS = {
    "tensorflow": ("tape.gradient found no path from the loss to any weight: compute the loss inside the "
                   "`with tf.GradientTape() as tape:` block (encode, sample, decode and the loss, all indented under "
                   "it), and call tape.gradient(loss, self.trainable_weights) after the block."),
    "jax": ("no gradient reached any weight: differentiate a function of the trainable variables (run the model with "
            "self.stateless_call(trainable, ...) inside it) with jax.value_and_grad."),
    "torch": ("no gradient reached any weight: call loss.backward() after computing the loss, and before reading "
              "each weight's .value.grad."),
}[BACKEND]
NOT_FROM_GENERATOR = ("has a self.seed_generator but draws its noise elsewhere: started twice from the same generator "
                      "state, its step decoded different codes. Draw eps with seed=self.seed_generator "
                      "(sample(z_mean, z_log_var, self.seed_generator)): then a run repeats exactly, and fit can give "
                      "your model the same noise as the package's (training.epoch_feed).")
NEW_GENERATOR_PER_CALL = ("creates a variable at every call, as a keras.random.SeedGenerator made inside call, compute_loss "
                          "or train_step does. Create the generator once, in __init__ "
                          "(self.seed_generator = keras.random.SeedGenerator(seed)), and draw with "
                          "seed=self.seed_generator.")
# What each backend raises on an operation with None (TensorFlow, JAX, PyTorch's conversion of None to a tensor).
NONE_ERRORS = ("None values not supported", "None is not a valid value", "Invalid dtype: object")
NONE_IN_STEP = ("a tensor in your step is None. Either the loss uses y, which is None because fit(x) passes no targets "
                "(a VAE reconstructs its input: use x), or it reads a shape with t.shape, whose batch size is None "
                "inside fit's graph (use keras.ops.shape(t)).")
NO_SAMPLING = ("never samples: the decoder received z_mean itself (z = z_mean). Draw z with your sample(z_mean, "
               "z_log_var, seed) in the step: without noise the decoder never learns the neighbourhood of each code, "
               "and z_log_var is trained by the KL alone.")


def check_train_step(model_class, own_train_step=False):
    """Check a ``keras.Model`` subclass ``model_class(encoder, decoder)`` whose train_step (or compute_loss)
    trains a VAE, the way fit runs it: two SGD steps in fit's compiled graph, on a tiny network whose
    posterior widths matter. The decoder records the codes the step really decodes, so a step that does
    not sample, samples with the book's sigma, or reuses frozen noise is named. Each step must report the
    mean negative ELBO as "loss" and move every weight by exactly -learning_rate * gradient. With
    ``own_train_step=True`` (the exercise that writes train_step) the class must write its own train_step,
    not inherit Keras' or hand over to it.
    """
    name = getattr(model_class, "__name__", "your model")
    if not isinstance(model_class, type) or not issubclass(model_class, keras.Model):
        raise CheckFailed(f"{name} is not a keras.Model subclass: pass the class itself, e.g. "
                          "checks.check_train_step(MyVAE).")
    if own_train_step and (getattr(model_class, "train_step", None) is getattr(keras.Model, "train_step")
                           or "super().train_step" in _source(getattr(model_class, "train_step", None))):
        raise _fail(f"{name} has no train_step of its own: it runs Keras' (inherited, or through super().train_step). "
                    "Write the step in the class: the loss, its gradient, the optimizer and the metrics.", model_class)
    if all(getattr(model_class, m) is getattr(keras.Model, m) for m in ("train_step", "compute_loss", "call")):
        raise _fail(f"{name} overrides neither train_step nor compute_loss: write train_step (replace the `...`).",
                    model_class)
    encoder, decoder, recorder, variables, x = _tiny_vae_parts()
    before = [keras.ops.convert_to_numpy(v) for v in variables]
    model = _call(name, _probe_class(model_class), encoder, decoder,
                  hint="The check creates it as model_class(encoder, decoder).")
    try:
        tracked = {id(v) for v in model.trainable_weights}
    except Exception:
        tracked = set()
    if not {id(v) for v in variables} <= tracked:
        raise _fail(f"{name}.__init__ must call super().__init__(**kwargs) and keep the encoder and decoder "
                    "(self.encoder = encoder; self.decoder = decoder): write its body (replace the `...`).",
                    model_class)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LEARNING_RATE))
    steps = _StepRecorder(variables)
    keras.utils.set_random_seed(SEED)
    generator = getattr(model, "seed_generator", None)
    generator_state = (keras.ops.convert_to_numpy(generator.state)
                       if isinstance(generator, keras.random.SeedGenerator) else None)
    _fit_steps(name, model, model_class, x, steps)
    calls = int(keras.ops.convert_to_numpy(recorder.count))
    if calls == 0 and BACKEND == "jax" and any(not np.array_equal(keras.ops.convert_to_numpy(v), w)
                                               for v, w in zip(variables, before)):
        raise _fail(f"{name}: the weights moved, but the layers' own state never did: train_step returned the "
                    "non-trainable state it was given. Return the non_trainable values that self.stateless_call and "
                    "self.stateless_compute_loss hand back (the seed generator's state among them: without it the "
                    "noise repeats at every step).", model_class)
    if calls == 0:
        raise _fail(f"{name}'s step never called self.decoder on a batch of codes: decode the sampled z with "
                    f"self.decoder(z) {IN_THE_STEP}.", model_class)
    if calls != STEPS:
        raise _fail(f"{name} calls the decoder {calls / STEPS:g} times per step: decode once per step, the "
                    "sampled z.", model_class)
    codes, previous_eps = keras.ops.convert_to_numpy(recorder.codes).astype(np.float64), None
    previous_grads, noise = None, []
    trackers = {m.name: m for m in model.metrics if m.name in TRACKERS}
    for key, metric in trackers.items():  # each epoch is one step: the tracker holds what the last step reported
        held = float(keras.ops.convert_to_numpy(metric.result()))
        reported = float(np.asarray(steps.logs[-1].get(key, held), np.float64))
        if not np.isclose(held, reported, rtol=1e-4, atol=1e-4):
            raise _fail(f"{name} reports {key} = {reported:.4g} but its tracker holds {held:.4g}: update the tracker "
                        "with the per-example term (update_state) and return its result(), so that fit's log is the "
                        "mean over the epoch, not the last batch's value.", model_class)
    for step in range(STEPS):
        weights = before if step == 0 else steps.weights[step - 1]
        eps = _check_sampled_codes(name, codes[step], *_posterior64(weights, x), previous_eps, model_class)
        recon, kl, kl_log_sigma, grads, recon_grads = _reference_step(weights, x, eps)
        _check_reported_loss(name, steps.logs[step], _elbo_variants(recon, kl, kl_log_sigma, LATENT_DIM),
                             model_class)
        _check_reported_terms(name, steps.logs[step], recon.mean(), kl.mean(), model_class, trackers)
        _check_update(name, weights, steps.weights[step], grads, recon_grads, n_encoder=6, code=model_class,
                      previous_grads=previous_grads)
        previous_eps, previous_grads = eps, grads
        noise.append(eps)
    _check_standard_normal(name, np.concatenate(noise), model_class)
    _check_noise_from_generator(name, model, model_class, generator_state, variables, before, x, recorder, codes[0])
    where = {"tensorflow": "in fit's compiled graph", "jax": "in fit's jax.jit-compiled step",
             "torch": "run by fit, eagerly with gradients,"}[BACKEND]
    print(f"✓ {name}: two SGD steps {where} sample z = z_mean + exp(0.5 * z_log_var) * eps with "
          "fresh noise, report the mean negative ELBO as 'loss' and move encoder and decoder weights by "
          "-learning_rate * gradient")


def _fit_steps(name, model, model_class, x, steps):
    """STEPS epochs of one batch each (so each step reports its own loss), the learner's errors named."""
    try:
        with warnings.catch_warnings(), _guard(name):
            warnings.simplefilter("ignore")  # "Gradients do not exist ...": explained below instead
            model.fit(x, epochs=STEPS, batch_size=BATCH, shuffle=False, verbose=0, callbacks=[steps])
    except CheckFailed:
        raise
    except _BadReturn as err:
        raise _fail(f"{name}.{err}; {RETURN_FIX['compute_loss' if 'compute_loss' in str(err) else 'train_step']}.",
                    model_class) from None
    except Exception as err:
        if "No gradients provided" in str(err):
            raise _fail(f"{name}: {NO_GRADIENTS}", model_class) from err
        if "only use seeded random ops" in str(err):
            raise _fail(f"{name} {UNSEEDED_IN_MODEL}", model_class) from err
        if "singleton tf.Variables" in str(err) or "cannot add new elements of state" in str(err):
            raise _fail(f"{name} {NEW_GENERATOR_PER_CALL}", model_class) from err
        if "_unique_id" in str(err):
            raise _fail(f"{name}: apply_gradients received a tensor where it expects a weight: it takes (gradient, "
                        "weight) pairs, zip(grads, self.trainable_weights), gradients first.", model_class) from err
        if any(text in str(err) for text in NONE_ERRORS):
            raise _fail(f"{name}: {NONE_IN_STEP}", model_class) from err
        if BACKEND == "jax" and "'NoneType' object is not callable" in str(err):
            raise _fail(f"{name}: {METRIC_IN_LAYER}", model_class) from err
        graph = ("numpy" in str(err).lower() or "SymbolicTensor" in str(err) or "None" in str(err)) and (
            f" {GRAPH_FIX}")
        raise CheckFailed(f"fit raised {_brief(err)} in {name}.{graph or ''}") from err
    if len(steps.logs) != STEPS:
        raise _fail(f"{name}: fit ran {len(steps.logs)} steps instead of {STEPS}.", model_class)


def _check_sampled_codes(name, z, mu, lv, previous_eps, code):
    """The codes one step decoded: a fresh draw from N(mu, exp(lv)); returns the noise eps it used."""
    if not np.all(np.isfinite(z)):
        raise _fail(f"{name}: the codes it decoded contain inf or NaN. {SAMPLING_FIX}", code)
    diff = z - mu
    if np.allclose(diff, 0, atol=1e-4):
        raise _fail(f"{name} {NO_SAMPLING}", code)
    shared = [diff / np.maximum(rule(lv), 1e-12) for _, rule in SCALE_RULES]
    if any(np.allclose(e, e[:1], atol=1e-4) for e in shared):  # whatever its sigma: one draw for all examples
        raise _fail(f"{name} gives every example the same noise (one draw shared by the whole batch): draw eps "
                    "with the full shape keras.ops.shape(z_mean).", code)
    if any(np.allclose(e, e[:, :1], atol=1e-4) for e in shared):  # one draw per example, the same in every dimension
        raise _fail(f"{name} gives all {z.shape[1]} latent dimensions of an example the same noise (eps of shape "
                    "(batch, 1)): draw eps with the full shape keras.ops.shape(z_mean).", code)
    scaled = (diff / np.exp(0.5 * lv)).std(axis=0)
    if scaled.max() < 0.3:  # every rule's noise would be too narrow: eps itself is scaled down
        raise _fail(f"{name}: the noise in z has a standard deviation of about {scaled.mean():.2g} where 1 is "
                    f"expected (a stddev= argument?). {SAMPLING_FIX}", code)
    scores = []
    for text, rule in SCALE_RULES:
        sigma = np.maximum(rule(lv), 1e-12)
        scores.append((np.sum(-0.5 * (diff / sigma) ** 2 - np.log(sigma)), text))
    best = max(scores)[1]
    if best:
        raise _fail(f"{name}: its sampling {best}. {SAMPLING_FIX}", code)
    eps = diff / np.exp(0.5 * lv)
    if previous_eps is not None and np.allclose(eps, previous_eps, atol=1e-3):
        raise _fail(f"{name} decoded z with the same noise in two steps: {FROZEN_NOISE}", code)
    if abs(eps.std() - 1) > 0.35 or abs(eps.mean()) > 0.45:
        raise _fail(f"{name}: the noise in z is not standard normal (mean {eps.mean():.2f}, standard deviation "
                    f"{eps.std():.2f} where 0 and 1 are expected): draw eps with keras.random.normal, not uniform or "
                    f"truncated_normal, and without a stddev= argument. {SAMPLING_FIX}", code)
    return eps


def _check_reported_loss(name, logs, variants, code=None):
    if not isinstance(logs, dict) or "loss" not in logs:
        keys = sorted(logs) if isinstance(logs, dict) else type(logs).__name__
        raise _fail(f"{name}.train_step must return a dict with a 'loss' entry (got {keys}).", code)
    loss = np.asarray(logs["loss"], np.float64)
    if loss.size != 1:
        raise _fail(f"{name}: the loss has shape {loss.shape}, not one number: average the per-example "
                    f"loss over the batch (keras.ops.mean). {ELBO_FIX}", code)
    if float(loss) == 0.0:
        raise _fail(f"{name} reports a loss of exactly 0: the tracker named 'loss' was never updated. Update it with "
                    "the step's loss before returning the metrics' results (in a train_step of your own, Keras "
                    "updates nothing for you).", code)
    _check_loss_value(name, float(loss), variants, code=code)


TRACKERS = {"reconstruction_loss": "the reconstruction term", "kl_loss": "the KL term"}


def _check_reported_terms(name, logs, recon, kl, code=None, trackers=()):
    """The trackers named reconstruction_loss and kl_loss, where the step reports them, must hold the batch's mean terms;
    a model that has such a tracker (``trackers``, their names) must report it."""
    right = {"reconstruction_loss": recon, "kl_loss": kl}
    for key, what in TRACKERS.items():
        if key not in logs and key in trackers:
            raise _fail(f"{name} has a tracker named {key}, but its train_step does not return its result: return "
                        "every metric's result, {m.name: m.result() for m in self.metrics}.", code)
        if key not in logs:
            continue
        got = float(np.asarray(logs[key], np.float64))
        if np.isclose(got, right[key], rtol=1e-3, atol=1e-4):
            continue
        other = "kl_loss" if key == "reconstruction_loss" else "reconstruction_loss"
        if got == 0.0:
            why = "its tracker was never updated: call update_state with the per-example term in compute_loss"
        elif np.isclose(got, right[other], rtol=1e-3, atol=1e-4):
            why = f"it holds {TRACKERS[other]}: the two trackers are swapped"
        elif np.isclose(got, recon + kl, rtol=1e-3, atol=1e-4):
            why = "it holds the whole loss, reconstruction + KL"
        else:
            why = "update its tracker with the per-example term itself"
        raise _fail(f"{name} reports {key} = {got:.4g}, where the batch's mean of {what} is {right[key]:.4g}: {why}. "
                    "The loss is right; the curves these trackers draw would not be.", code)


NOISE_TAIL = 2.4  # a standard normal passes 2.4 in 1.64 % of draws: none among the check's 600 happens 1 in 20,000


def _check_standard_normal(name, eps, code=None):
    """Draws of eps must look standard normal in spread, tails and peakedness, not only in mean and variance:
    uniform, truncated (even rescaled), sign or logistic noise with unit variance is named."""
    eps = np.ravel(eps)
    n, spread = eps.size, float(eps.std())
    if abs(spread - 1) > 4.5 / np.sqrt(2 * n):
        raise _fail(f"{name}: the noise in z has a standard deviation of {spread:.2f} where 1 is expected: a stddev= "
                    f"argument, or noise that is not keras.random.normal's (truncated_normal's has 0.88). "
                    f"{SAMPLING_FIX}", code)
    tails = int(np.sum(np.abs(eps) > NOISE_TAIL))
    kurtosis = float(np.mean((eps - eps.mean()) ** 4) / spread**4)
    if tails == 0 or abs(kurtosis - 3) > 5 * np.sqrt(24 / n):
        raise _fail(f"{name}: the noise in z is not normal: {tails} of {n} draws lie beyond {NOISE_TAIL:g} standard "
                    f"deviations, where a standard normal puts about {0.0164 * n:.0f}, and their kurtosis is "
                    f"{kurtosis:.2f}, where it is 3 (uniform noise has 1.8): draw eps with keras.random.normal, not "
                    f"uniform, truncated_normal or a reshaped draw. {SAMPLING_FIX}", code)


def _check_noise_from_generator(name, model, model_class, state, variables, before, x, recorder, first_codes):
    """A model with a self.seed_generator must draw its noise from it: one more step from the first step's weights and
    generator state must decode the first step's codes again."""
    if state is None:
        return
    for variable, value in zip(variables, before):
        variable.assign(value)
    model.seed_generator.state.assign(state)
    with warnings.catch_warnings(), _guard(name):
        warnings.simplefilter("ignore")
        model.fit(x, epochs=1, batch_size=BATCH, shuffle=False, verbose=0)
    again = keras.ops.convert_to_numpy(recorder.codes)[STEPS].astype(np.float64)
    if not np.allclose(again, first_codes, atol=1e-5):
        raise _fail(f"{name} {NOT_FROM_GENERATOR}", model_class)


APPLY_GRADIENTS = {
    "tensorflow": "call self.optimizer.apply_gradients(zip(grads, self.trainable_weights)) with grads = "
                  "tape.gradient(loss, self.trainable_weights)",
    "jax": "apply the gradients with trainable, optimizer_state = self.optimizer.stateless_apply(optimizer_state, "
           "gradients, trainable) and return that new trainable state in the state train_step returns",
    "torch": "call loss.backward(), then self.optimizer.apply([w.value.grad for w in self.trainable_weights], "
             "self.trainable_weights) inside `with torch.no_grad():`",
}[BACKEND]


def _check_update(name, before, after, grads, recon_grads, n_encoder, code=None, previous_grads=None):
    """Compare the weight change with -learning_rate * gradient: all weights, then decoder and encoder
    (``recon_grads``, the gradient of the reconstruction alone, names a KL left out of the differentiated loss;
    ``previous_grads``, the last step's, names gradients that PyTorch accumulated across steps)."""
    flat = lambda arrays: np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])  # noqa: E731
    moved, want = flat(after) - flat(before), -LEARNING_RATE * flat(grads)
    close = lambda got, ref: np.linalg.norm(got - ref) <= 1e-3 * np.linalg.norm(ref) + 1e-8  # noqa: E731
    encoder = slice(0, sum(np.size(g) for g in grads[:n_encoder]))
    decoder = slice(encoder.stop, None)
    if close(moved, want):
        return
    if not moved.any():
        raise _fail(f"{name}: no weight changed: {APPLY_GRADIENTS}.", code)
    if previous_grads is not None and close(moved, want - LEARNING_RATE * flat(previous_grads)):
        raise _fail(f"{name}: the second step applied the first step's gradient again, added to its own: the gradients "
                    "accumulate from step to step. Call self.zero_grad() at the start of train_step.", code)
    if close(moved, -want):
        raise _fail(f"{name}: the weights moved up the gradient (gradient ascent): apply the gradient of "
                    "+loss, the quantity to minimise.", code)
    if close(moved, 2 * want):
        raise _fail(f"{name}: each step moved the weights twice as far as one update: apply the gradients once "
                    "per step (one call of the optimizer).", code)
    if close(moved, BATCH * want):
        raise _fail(f"{name}: the update is {BATCH} (the batch size) times too large: the loss you "
                    f"differentiate is summed over the batch instead of averaged. {ELBO_FIX}", code)
    scale = float(moved @ want / (want @ want)) if want.any() else 0.0
    if scale > 0 and close(moved, scale * want) and not np.isclose(scale, 1, rtol=1e-2):
        raise _fail(f"{name}: the weights moved by {scale * LEARNING_RATE:.3g} times the gradient, where the optimizer "
                    f"the model was compiled with steps by {LEARNING_RATE:g}: apply the gradients with "
                    "self.optimizer, not by hand, so that compile's optimizer and learning-rate schedule are used.", code)
    if not moved[decoder].any():
        raise _fail(f"{name}: the decoder's weights did not move: apply the gradients to "
                    "self.trainable_weights (encoder and decoder).", code)
    if not close(moved[decoder], want[decoder]):
        raise _fail(f"{name}: the weight update is not -learning_rate * gradient of the loss you report: "
                    f"differentiate that same loss. {ELBO_FIX}", code)
    if not moved[encoder].any():
        raise _fail(f"{name}: the encoder's weights did not move: gradients do not reach z_mean and "
                    f"z_log_var. Call self.encoder {IN_THE_STEP}, sample z with keras.ops "
                    "(no NumPy, no stop_gradient) and apply the gradients to self.trainable_weights.", code)
    if close(moved[encoder], -LEARNING_RATE * flat(recon_grads)[encoder]):
        raise _fail(f"{name}: the encoder moved by the gradient of the reconstruction alone: the KL is missing "
                    "from the loss you differentiate (report and differentiate the same loss, "
                    "reconstruction + KL).", code)
    raise _fail(f"{name}: the decoder learns correctly but the encoder's update is wrong: the "
                "reconstruction's gradient does not flow back through z to z_mean and z_log_var (sample z with "
                f"keras.ops {IN_THE_STEP}, no NumPy, no stop_gradient).", code)


# 6. The learner's own VAE, trained ------------------------------------------------------------

MY_VAE_TOLERANCE = 8.0  # nats of validation ELBO; see check_my_vae for how it was chosen


def _scores(model, x_val, seed):
    """Validation ELBO, mean KL and mean posterior sigma of a model with an encoder and a decoder."""
    from vae_helpers import evaluation, latent  # noqa: PLC0415  (heavy modules, only for this check)

    z_mean, z_log_var = latent.encode(model, x_val, return_log_var=True)
    z_mean, z_log_var = z_mean.astype(np.float64), z_log_var.astype(np.float64)
    kl = float(np.mean(0.5 * np.sum(np.exp(z_log_var) + z_mean**2 - 1 - z_log_var, axis=-1)))
    return {"ELBO": evaluation.elbo(model, x_val, n_samples=8, seed=seed), "KL": kl,
            "sigma": float(np.mean(np.exp(0.5 * z_log_var)))}


def _likely_culprit(mine, reference):
    """Name what most often makes a VAE that passed the one-step checks train worse than the package's."""
    if mine["KL"] < 0.25 * reference["KL"]:
        return ("its KL is almost 0 (the codes carry almost no information: posterior collapse). The reconstruction "
                "weighs too little against the KL: a per-pixel mean instead of the sum over the 784 pixels, or a "
                "KL weight above 1")
    if mine["KL"] > 1.5 * reference["KL"]:
        return ("its KL is much larger than the package's: the KL weighs less than 1 (the book's beta = 0.784 / "
                "latent_dim, or a mean over the latent dimensions)")
    if mine["sigma"] > 3 * reference["sigma"]:
        return ("its posteriors are much wider than the package's: z_log_var learns from the KL alone, so the "
                "step does not sample (z = z_mean) or its noise is frozen")
    return ("its KL and posterior widths look normal, so look at the sampling: fresh noise for every batch (no seed, "
            "no NumPy), z = z_mean + exp(0.5 * z_log_var) * eps, and the same data, epochs and batch size as here")


def _trained_vae(model, role, name):
    """Refuse anything but a trained model with an encoder and a decoder, naming ``role``."""
    if not (hasattr(model, "encoder") and hasattr(model, "decoder")):
        raise CheckFailed(f"{name}: {role} has no encoder and decoder: pass a VAE model such as my_vae or vae.")
    if getattr(model, "optimizer", None) is None or int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 0:
        raise CheckFailed(f"{name}: {role} has not been trained yet: run its training cell first.")
    return int(model.decoder.input_shape[-1])


def check_my_vae(model, reference, x_val, seed=0, tolerance=MY_VAE_TOLERANCE):
    """Close the loop: the learner's trained VAE must score about as well as ``models.VAE`` trained the same way.

    ``model`` is the learner's trained model (with ``encoder`` and ``decoder``); ``reference`` is the
    package's VAE with the same latent dimension, trained by ``training.train_vae``. Train ``model``
    from the reference's first weights, with the same optimizer, on ``training.epoch_feed``'s batches
    and noise for the same seed: then a correct model takes the reference's steps and ends where it
    ended, up to rounding (0.00 nats apart in notebook 3). First the learner's class goes through
    ``check_train_step``, which names a mistake in the step itself. Then both models are scored on
    ``x_val`` (validation ELBO with 8 draws per image, same noise) and must agree within ``tolerance``
    nats. The default, 8 nats, is far below what a broken step costs (28 nats for a per-pixel mean,
    189 for no sampling, after one epoch on 20,000 digits). It is not a margin for chance: trained on
    other batches with other noise, a correct model ended up to 12 nats behind the reference after
    notebook 3's two epochs (BENCHMARKS.md). When they do not agree, the message names the likely
    culprit from the KL and the posterior widths.
    """
    name = type(model).__name__
    latent_dim = _trained_vae(model, "your model", name)
    if _trained_vae(reference, "the reference model", name) != latent_dim:
        raise CheckFailed(f"{name}: your model has {latent_dim} latent dimensions and the reference "
                          f"{int(reference.decoder.input_shape[-1])}: compare models of the same size.")
    from vae_helpers.training import _seed_generator  # noqa: PLC0415  (heavy module, only for this check)

    if _seed_generator(model) is None:
        raise CheckFailed(f"{name} has no self.seed_generator, so it cannot have drawn the noise models.VAE drew, and the "
                          "two scores would differ by chance: create keras.random.SeedGenerator(seed) in __init__ as "
                          "self.seed_generator, draw eps with seed=self.seed_generator, and train it on "
                          "training.epoch_feed's batches and noise.")
    quiet = _Quiet()
    try:
        with contextlib.redirect_stdout(quiet):
            check_train_step(type(model))
    except CheckFailed as err:
        raise CheckFailed(f"Your model's class did not pass the one-step check: {err}") from None
    mine, theirs = _scores(model, x_val, seed), _scores(reference, x_val, seed)
    line = (f"validation ELBO {mine['ELBO']:.2f} nats against {theirs['ELBO']:.2f} for models.VAE trained the same "
            f"way (KL {mine['KL']:.2f} against {theirs['KL']:.2f})")
    if not np.isfinite(mine["ELBO"]) or mine["ELBO"] < theirs["ELBO"] - tolerance:
        raise CheckFailed(f"{name}: {line}, more than {tolerance:g} nats worse. Likely culprit: "
                          f"{_likely_culprit(mine, theirs)}.")
    print(f"✓ {name}: {line}; within {tolerance:g} nats, so your pieces make a working VAE")


class _Quiet:
    def write(self, text):
        return len(text)

    def flush(self):
        pass


# Exercise answers --------------------------------------------------------------------------------



def _whole_number(value):
    """``value`` as an int when it is one whole number (a Python, NumPy or backend scalar), else None."""
    if keras.ops.is_tensor(value):
        value = keras.ops.convert_to_numpy(value)
    if isinstance(value, (str, bytes, bool, np.bool_)) or np.ndim(value) != 0:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if np.isfinite(number) and number == int(number) else None


def check_active_units(variances, count, model, x, threshold=ACTIVE_THRESHOLD):
    """Exercise 3 of notebook 3: one variance per latent dimension, and the number of active dimensions.

    ``variances`` must be the variance over the digits ``x`` of each dimension of the posterior *mean*
    (what ``latent.encode(model, x)`` returns), and ``count`` the number of them above ``threshold``. The
    expected values are computed here from the model; the usual slips are named: variances of
    ``z_log_var``, standard deviations, the variance over the wrong axis, the mean posterior variance.
    """
    from vae_helpers import latent  # noqa: PLC0415

    for label, value in (("variances", variances), ("count", count)):
        if value is Ellipsis or value is None:
            raise CheckFailed(f"{label}: no answer yet: replace the `...` with your answer")
    z_mean, z_log_var = (np.asarray(a, np.float64) for a in latent.encode(model, x, return_log_var=True))
    latent_dim = z_mean.shape[1]
    right = z_mean.var(axis=0)
    try:
        got = np.asarray(keras.ops.convert_to_numpy(variances) if keras.ops.is_tensor(variances) else variances, np.float64)
    except (TypeError, ValueError):
        raise CheckFailed(f"variances: expected {latent_dim} numbers, one per latent dimension, got a "
                          f"{type(variances).__name__}: use np.var(latent.encode(model, x), axis=0).") from None
    wrong = [
        ("are the variances of z_log_var across the digits. A dimension is active when its posterior *mean* "
         "moves from digit to digit: use latent.encode(model, x), which returns the means", z_log_var.var(axis=0)),
        ("are standard deviations: the criterion is on the variance (np.var, not np.std)", np.sqrt(right)),
        ("are the average posterior variances exp(z_log_var). Activity is how much the posterior mean varies "
         "across the digits, not how wide each posterior is", np.exp(z_log_var).mean(axis=0)),
        ("are one variance per digit: take the variance over the digits, axis=0, one value per latent dimension",
         z_mean.var(axis=1)),
    ]
    n = len(z_mean)
    unbiased = right * n / (n - 1)  # ddof=1, as torch and pandas default to: also right
    if _match(got, [((), right), ((), unbiased)], rtol=1e-3, atol=1e-6) is None:
        if got.shape == right.shape and np.allclose(np.sort(got), np.sort(right), rtol=1e-3, atol=1e-6):
            raise CheckFailed("Your variances are the right values in another order: keep one per latent "
                              "dimension, in the encoder's order (sort only a copy for printing).")
        for message, values in wrong:
            if _match(got, [((), values)], rtol=1e-3, atol=1e-6) is not None:
                raise CheckFailed(f"Your variances {message}.")
        raise CheckFailed(f"Your variances (shape {got.shape}) are not the variances of the {latent_dim} "
                          f"posterior-mean dimensions over the {len(z_mean)} digits: np.var(latent.encode(model, x), "
                          "axis=0).")
    number = _whole_number(count)
    if number is None:
        raise CheckFailed(f"count: expected one whole number such as 5, got {count!r} ({type(count).__name__}): "
                          "count the variances above the threshold, e.g. int(np.sum(variances > 0.01)).")
    active = int(np.sum(right > threshold))
    if number != active:
        why = ""
        if number == latent_dim - active:
            why = " That is the number of *inactive* dimensions: count the variances above the threshold."
        elif number == int(np.sum(np.sqrt(right) > threshold)):
            why = " Compare the variances themselves, not their square roots, with the threshold."
        raise CheckFailed(f"count: {count} is not the number of variances above {threshold:g} ({active} of "
                          f"{latent_dim}).{why}")
    used = right[right > threshold]
    spread = f"; their variances range from {used.min():.2f} to {used.max():.2f}" if active else ""
    print(f"✓ {active} of {latent_dim} dimensions are active on these {len(z_mean):,} digits{spread}")


def _log_weight_cases():
    """Log-weights (k, n) as an importance-weighted bound sees them: ordinary, far below 0, far above, k = 1."""
    rng = np.random.default_rng(7)
    ordinary = rng.normal(-3.0, 2.0, size=(6, 5))
    apart = ordinary + np.array([0.0, -300.0, -900.0, 200.0, -600.0])
    wide = ordinary.copy()
    wide[:, 2] = np.linspace(-1600.0, -100.0, len(wide))
    return [("log-weights near -3", ordinary),
            ("log-weights near -1000, as for an image's log p(x, z)", ordinary - 997.0),
            ("log-weights near +800", ordinary + 803.0),
            ("images whose log-weights lie hundreds of nats apart", apart),
            ("one image whose log-weights spread over 1,500 nats", wide),
            ("a single sample (k = 1)", ordinary[:1])]


def _log_mean_exp64(log_w):
    """log(mean_k exp(log_w)) over axis 0, stable, in float64 (the reference)."""
    top = log_w.max(axis=0)
    return top + np.log(np.mean(np.exp(log_w - top), axis=0))


def check_log_mean_exp(fn):
    """Exercise 4 of notebook 3: ``fn(log_w)`` turns log-weights (k, n) into log(mean over k of exp(log_w)), (n,).

    It runs on four inputs: ordinary values, values near -1000 (exp underflows to 0) and near +800 (exp
    overflows), and a single sample. It must leave its input unchanged. The usual slips are named: the mean
    of the logs (the ELBO's estimate), a log-sum-exp without the -log k, the reduction over the wrong axis,
    the largest weight alone, and exponentials taken directly.
    """
    name = _name(fn)
    for label, log_w in _log_weight_cases():
        given = log_w.copy()
        with np.errstate(all="ignore"):  # an overflow is named below, not warned about
            got = _call(name, fn, given, hint="It receives a NumPy array of log-weights, shape (k, n).")
        if got is Ellipsis:
            raise _fail(f"{name}: no answer yet: replace the `...` with your code", fn)
        got = _array(name, got, fn)
        if not np.array_equal(given, log_w):
            raise _fail(f"{name} changed the array it was given (an in-place `-=` or `*=`): the same log-weights "
                        "are used again for other k. Compute into a new array, e.g. `shifted = log_w - top`.", fn)
        k, n = log_w.shape
        right = _log_mean_exp64(log_w)
        if got.shape != (n,):
            why = (" That is one value per sample: reduce over axis 0, the k samples, to get one value per image."
                   if got.shape == (k,) and k != n else
                   " Drop keepdims=True (or index [0])." if got.shape == (1, n) else "")
            raise _fail(f"{name} returned shape {got.shape} for log-weights of shape ({k}, {n}); expected ({n},), "
                        f"one value per image.{why}", fn)
        if not np.all(np.isfinite(got)):
            raise _fail(f"{name} returned inf or nan for {label}: exp overflows or underflows there. Subtract "
                        "each image's own largest log-weight (a maximum over axis 0, not over the whole array) "
                        "before exponentiating, and add it back after the log.", fn)
        wrong = [
            ("is the mean of the log-weights: that is the ELBO's estimate. The bound takes the log of the mean "
             "of the weights, log(mean(exp(log_w)))", log_w.mean(axis=0)),
            (f"is log(sum(exp(log_w))), too high by log k = log {k}: divide the sum by k (subtract log k)",
             right + np.log(k)),
            ("is the largest log-weight alone: the others still count, through log(mean(exp(log_w - top)))",
             log_w.max(axis=0)),
            (f"subtracts log k twice (too low by log k = log {k}): a mean already divides by k once",
             right - np.log(k)),
        ]
        if _match(got, [((), right)], rtol=1e-7, atol=1e-3) is None:
            for message, values in wrong:
                if k > 1 and _match(got, [((), values)], rtol=1e-7, atol=1e-3) is not None:
                    raise _fail(f"{name} {message}.", fn)
            raise _fail(f"{name} gives wrong values for {label}: expected log(mean over the k samples of "
                        "exp(log_w)), one value per image.", fn)
    print(f"✓ {name}: right on ordinary log-weights, near -1000 and +800, for images far apart and a wide spread "
          "(no overflow), and for k = 1; its input left unchanged")


# 8. Free bits (notebook 6) -------------------------------------------------------------------

FREE_BITS_FORMULA = ("sum over the latent dimensions of max(free_bits, the batch's mean KL in that dimension), "
                     "where the KL of dimension j is 0.5 * (exp(z_log_var_j) + z_mean_j**2 - 1 - z_log_var_j)")
FREE_BITS_FIX = f"Return one number: the {FREE_BITS_FORMULA}."
FREE_BITS_PER_EXAMPLE = ("applies the floor to each example's KL before averaging over the batch: a dimension that a "
                         "few digits use a lot then escapes the floor for all of them. Average each dimension's KL "
                         "over the batch first (axis 0), then take the maximum with free_bits")
FREE_BITS_TOTAL = ("applies the floor to the total KL (summed over the dimensions) instead of to each dimension: "
                   "then one busy dimension lets the others collapse. Floor every dimension on its own")
FREE_BITS_MIN = "takes the minimum with free_bits instead of the maximum (that caps the KL instead of flooring it)"
FREE_BITS_DROP = ("drops the dimensions below free_bits (counts them as 0) instead of counting them as free_bits: "
                  "the value then jumps as a dimension crosses the threshold. Use the maximum")
FREE_BITS_NONE = "is the plain KL, averaged over the batch: the floor free_bits is missing"
FREE_BITS_MEAN_DIMS = "averages over the latent dimensions instead of summing them"
FREE_BITS_BATCH_SUM = "sums over the batch instead of averaging (batch size times too large)"
FREE_BITS_EXAMPLE_TOTAL = ("applies the floor to each example's total KL (summed over the dimensions): floor each "
                           "dimension, and only after averaging it over the batch")
FREE_BITS_HINT = ("It receives z_mean and z_log_var, float32 tensors of shape (batch, latent_dim), and free_bits, a "
                  "float. keras.ops.maximum(a, b) is the element-wise maximum; keras.ops.max reduces along an axis.")


def _free_bits_inputs():
    """Six examples, four latent dimensions. With free_bits = 1, the batch-mean KL of dimensions 0 and 1 is below the
    floor and that of dimensions 2 and 3 above it, and in each some examples lie on the other side of it."""
    z_mean = np.array([[0.1, 0.3, 1.8, -2.5], [-0.2, 0.9, 0.2, 2.8], [1.6, -0.4, -1.7, 0.1],
                       [0.0, 0.2, 2.2, -2.9], [-0.3, -1.5, 0.3, 2.6], [0.2, 0.1, -2.0, 0.4]], np.float32)
    z_log_var = np.array([[0.1, -0.2, -2.5, -3.0], [-0.3, 0.2, -0.1, -2.8], [0.2, 0.0, -2.2, 0.1],
                          [0.0, 0.1, -2.9, -3.2], [-0.1, -0.4, 0.2, -2.7], [0.3, 0.0, -2.4, -0.2]], np.float32)
    return z_mean, z_log_var


def _free_bits_variants(mu, lv, free_bits):
    """(mistakes, value) for the right free-bits KL (first) and its usual slips, in float64."""
    mu, lv = np.asarray(mu, np.float64), np.asarray(lv, np.float64)
    terms = {(): np.exp(lv) + mu**2 - 1 - lv, (LOG_SIGMA,): np.exp(2 * lv) + mu**2 - 1 - 2 * lv,
             (NO_MINUS_ONE,): np.exp(lv) + mu**2 - lv}
    lam = free_bits
    reductions = {
        (): lambda k: np.sum(np.maximum(lam, k.mean(0))),
        (FREE_BITS_PER_EXAMPLE,): lambda k: np.mean(np.sum(np.maximum(lam, k), axis=1)),
        (FREE_BITS_TOTAL,): lambda k: max(lam, k.sum(1).mean()),
        (FREE_BITS_TOTAL + " (here with free_bits times the number of dimensions)",):
            lambda k: max(lam * k.shape[1], k.sum(1).mean()),
        (FREE_BITS_MIN,): lambda k: np.sum(np.minimum(lam, k.mean(0))),
        (FREE_BITS_DROP,): lambda k: np.sum(np.where(k.mean(0) > lam, k.mean(0), 0.0)),
        (FREE_BITS_NONE,): lambda k: np.sum(k.mean(0)),
        (FREE_BITS_MEAN_DIMS,): lambda k: np.mean(np.maximum(lam, k.mean(0))),
        (FREE_BITS_BATCH_SUM,): lambda k: np.sum(np.maximum(lam, k.sum(0))),
        (FREE_BITS_EXAMPLE_TOTAL,): lambda k: np.mean(np.maximum(lam, k.sum(1))),
    }
    factors = {(): 0.5, (NO_HALF,): 1.0, (SIGN,): -0.5}
    return _variants(lambda t, reduce, f: reduce(f * t), terms, reductions, factors)


def _free_bits_gradients(mu, lv, free_bits):
    """d/d(z_mean, z_log_var) of the right free-bits KL: zero in the floored dimensions."""
    mu, lv = np.asarray(mu, np.float64), np.asarray(lv, np.float64)
    n = len(mu)
    kept = (0.5 * (np.exp(lv) + mu**2 - 1 - lv)).mean(0) > free_bits
    return [kept * mu / n, kept * 0.5 * (np.exp(lv) - 1) / n]


def check_free_bits(fn):
    """Check ``fn(z_mean, z_log_var, free_bits)``: the batch's KL with a floor of ``free_bits`` nats per dimension.

    The value must be the sum over the latent dimensions of max(free_bits, that dimension's KL averaged
    over the batch), one number (Kingma et al., 2016). Six examples in four dimensions, two of them below
    the floor, are tried at four values of free_bits (0, 1, 2.5 and 6); the usual slips are named: a
    floor per example or on the total, the minimum, dimensions dropped, no floor, a mean over the
    dimensions, a sum over the batch, a KL without its 1/2 or -1. Then the function runs twice
    inside a compiled function with an unknown batch size: no gradient may reach a floored dimension,
    and the others get the KL's own gradient. A version that is lower by the constant
    free_bits * latent_dim (``max(0, kl - free_bits)``) trains alike and is accepted.
    """
    name = _name(fn)
    hint = FREE_BITS_HINT
    z_mean, z_log_var = _free_bits_inputs()
    floors = (1.0, 0.0, 2.5, 6.0)  # 6 floors every dimension, and lies above the total KL (5.4)
    latent_dim = z_mean.shape[1]
    got = []
    for free_bits in floors:
        # By keyword, as the notebook passes it (functools.partial(fn, free_bits=...)).
        raw = _call(name, lambda m, lv: fn(m, lv, free_bits=free_bits), _tensor(z_mean), _tensor(z_log_var),
                    hint=hint)
        value = _array(name, raw, fn)
        dtype = keras.backend.standardize_dtype(getattr(raw, "dtype", "float32"))
        if dtype != "float32":
            raise _fail(f"{name} returned {dtype} numbers: fit adds this to the model's float32 loss, which fails. Keep "
                        "float32, as z_mean is (keras.ops.cast(..., 'float32') if you computed in float64).", fn)
        if value.shape == (len(z_mean),):
            raise _fail(f"{name} returned one value per example, shape {value.shape}: free bits apply to the batch's "
                        f"average KL in each dimension, so the result is one number. {FREE_BITS_FIX}", fn)
        if value.shape == (z_mean.shape[1],):
            raise _fail(f"{name} returned one value per latent dimension, shape {value.shape}: sum them. "
                        f"{FREE_BITS_FIX}", fn)
        if value.size != 1:
            raise _fail(f"{name} returned shape {value.shape}; expected one number. {FREE_BITS_FIX}", fn)
        got.append(float(value.reshape(())))
    got = np.array(got)
    # Each variant's values at the three floors side by side, so that a slip is named only if it fits at every floor.
    per_floor = [_free_bits_variants(z_mean, z_log_var, free_bits) for free_bits in floors]
    variants = [(mistakes, np.array([values[i][1] for values in per_floor]))
                for i, (mistakes, _) in enumerate(per_floor[0])]
    right = variants[0][1]
    shift = np.array(floors) * latent_dim  # max(0, kl - free_bits) is lower by this, and trains alike
    shifted = bool(np.allclose(got, right - shift, rtol=1e-4, atol=1e-5))
    if not shifted:
        mistakes = _match(got, variants + [(m, v - shift) for m, v in variants[1:]])
        if mistakes is None and np.allclose(got, got[0], rtol=1e-6, atol=1e-6):
            raise _fail(f"{name} gives {got[0]:.5g} whatever free_bits it is given (0, 1, 2.5 or 6): it ignores the "
                        f"argument free_bits (a floor written as a number, or a global variable?). {FREE_BITS_FIX}", fn)
        if mistakes is None:
            i = int(np.argmax(~np.isclose(got, right, rtol=1e-4, atol=1e-5)))
            raise _fail(f"{name} gives {got[i]:.5g} with free_bits={floors[i]:g} where {right[i]:.5g} is expected. "
                        f"{FREE_BITS_FIX}", fn)
        if mistakes:
            raise _fail(f"{name} {_join(mistakes)}. {FREE_BITS_FIX}", fn)
    free_bits = 1.0
    compiled = lambda mean, log_var: fn(mean, log_var, free_bits=free_bits)  # noqa: E731  (as the notebook calls it)
    compiled.__name__ = name
    target = right[0] - (free_bits * z_mean.shape[1] if shifted else 0.0)
    for value, grads in _as_fit_with_gradients(name, compiled, (z_mean, z_log_var), hint):
        if value.size != 1 or not np.isclose(value.reshape(()), target, rtol=1e-4, atol=1e-5):
            raise _fail(f"{name} gives another value{AS_FIT}, than when called directly. {GRAPH_FIX}", fn)
        expected = _free_bits_gradients(z_mean, z_log_var, free_bits)
        for grad, want, label in zip(grads, expected, ("z_mean", "z_log_var")):
            if grad is None or not np.any(grad):
                raise _fail(f"{name} gives the right values but no gradient reaches {label}: it is computed outside "
                            "keras.ops (NumPy, .numpy(), a Python float) or behind stop_gradient. Compute it with "
                            "keras.ops from the tensors you receive.", fn)
            if np.any(grad[:, :2]):
                raise _fail(f"{name} gives the right values but a gradient still reaches {label} in the dimensions "
                            "below the floor: there the penalty must be the constant free_bits (keras.ops.maximum "
                            "does that; a where() that mixes in the KL's gradient does not).", fn)
            if not np.allclose(grad, want, rtol=1e-3, atol=1e-5):
                raise _fail(f"{name} gives the right values but the wrong gradient with respect to {label} in the "
                            "dimensions above the floor (is part of it a copy, a constant or stop_gradient?).", fn)
    note = "; lower than the floored KL by free_bits x latent_dim, a constant: it trains alike" if shifted else ""
    print(f"✓ {name}: the floored KL at free_bits = 0, 1, 2.5 and 6, one number; {PASSED_AS_FIT}, "
          f"no gradient reaches the floored dimensions, the others get the KL's{note}")


def check_number(name, got, expected, tolerance, hint="", reduce=None):
    """For an exercise whose answer is a number: one "✓" line when ``got`` is within ``tolerance`` of ``expected``.

    Otherwise CheckFailed saying how far off it is, with ``hint`` (what to reconsider). ``reduce``
    (e.g. ``np.mean``) first turns an array of results into the number to check.
    """
    if got is Ellipsis:
        raise CheckFailed(f"{name}: no answer yet: replace the `...` with your answer")
    if got is None:
        raise CheckFailed(f"{name} is None. If it comes from tape.gradient, the computation ran outside the "
                          "`with tf.GradientTape() as tape:` block, or does not depend on what you differentiate "
                          "by; if it comes from a function, that function has no return.")
    if keras.ops.is_tensor(got):
        got = keras.ops.convert_to_numpy(got)
    try:
        value = float(np.asarray(got if reduce is None else reduce(np.asarray(got, np.float64)), dtype=np.float64).squeeze())
    except (TypeError, ValueError) as err:
        raise CheckFailed(f"{name}: expected one number, got {type(got).__name__} {np.shape(got)}") from err
    if not abs(value - expected) <= tolerance:
        raise CheckFailed(f"{name}: {value:.4g} is not within {tolerance:g} of the expected value. {hint}".strip())
    print(f"✓ {name}: {value:.4g} (expected {expected:.4g} ± {tolerance:g})")
