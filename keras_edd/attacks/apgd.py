"""Auto-PGD (Croce & Hein, ICML 2020): PGD with a step size that adapts per sample.

APGD is the gradient attack of AutoAttack: no step size to tune, a budget of
`nb_iter` iterations, and the step halved only when progress stalls.

Per sample, from a uniform random start x^(0) in the eps-ball:
  z^(k+1) = P(x^(k) + eta * s(grad f(x^(k))))     s = sign (L_inf) or g / ||g||_2 (L2)
  x^(k+1) = P(x^(k) + alpha (z^(k+1) - x^(k)) + (1 - alpha) (x^(k) - x^(k-1)))
with P the projection onto the eps-ball intersected with [clip_min, clip_max],
alpha = `momentum` = 0.75 (alpha = 1 at the first step) and eta = 2 eps at
first. The best (highest-loss) point x_max and its loss f_max are kept.

Checkpoints w_j = ceil(p_j * nb_iter) with p_0 = 0, p_1 = 0.22 and
p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) while p_j <= 1 (see
`checkpoints`). At iterate w_j the step is halved and the iterate replaced by
x_max when
  condition 1: fewer than rho * (w_j - w_{j-1}) of the steps since w_{j-1}
               increased the loss (f(x^(i+1)) > f(x^(i))), rho = 0.75; or
  condition 2: eta was not halved at w_{j-1} and f_max has not increased since.
The rule is `checkpoint_update` of keras_edd.attacks.apgd_step_size, a pure function
used by the compiled loop and by `step_halvings`, its replay on a given loss trace.

Losses f (maximised), on logits Z:
  "ce"            cross-entropy CE(y);
  "dlr"           -(Z_y - max_{i != y} Z_i) / (Z_pi1 - Z_pi3 + 1e-12), pi the
                  classes sorted by logit, descending;
  "dlr_targeted"  -(Z_y - Z_t) / (Z_pi1 - (Z_pi3 + Z_pi4) / 2 + 1e-12), one run per
                  target t among the `nb_targets` real classes != y ranked highest
                  on the clean input (`target_classes`); as in AutoAttack's APGD-T
                  the aim is still any misclassification, t only steers.

Outlier class (`outlier_class` = index n of the "detected" logit of an n + 1
logit model). The attack wins only when a real class other than y is on top.
Every loss is then computed on the merged logits: column y holds
max(Z_y, Z_n), column n is removed, the other real classes keep theirs (the
max matches `utils.real_and_other`). So adaptive DLR has the numerator
max_{i not in {y, n}} Z_i - max(Z_y, Z_n) (= `utils.attack_margin`) and pi
sorts the merged logits, i.e. the real classes with y and n counted as one;
adaptive targeted DLR needs t to beat both y and n; adaptive CE is the
cross-entropy of the merged class "y or n", -log(p_y + p_n)
(`utils.attack_objective`).

Success is `utils.attack_success` at kappa = 0 (argmax a real class != y). The
clean input is judged first (already misclassified: returned as it is, 0
iterations). A sample that succeeds stops at once, keeping that point; only
the others are computed on (the loop ends when all have succeeded), and later
restarts and targets attack only the inputs not broken yet. The result per
input is its successful point, else the highest-loss point of all runs (the
clean input included; losses of different targets compared as they are).

Differences from the paper and the reference code (fra31/auto-attack):
  * condition 2 may fire at w_1 (eta(w_0) = eta(w_1) literally holds); the
    reference code never halves at w_1 by condition 2;
  * condition 1 compares f(x^(w_0 + 1)) with f(x^(0)), and after a restart from
    x_max the next step is compared with f_max (the paper's x^(k+1) <- x_max);
  * checkpoints use exact integer arithmetic: ART's float ceil(0.22 * 100) = 23;
    duplicate checkpoints (tiny nb_iter) are merged;
  * a sample stops at its first successful iterate (AutoAttack runs on and
    keeps the last successful one; the success rate is the same);
  * the random start is uniform in the ball; no L1;
  * with EOT (`eot_iter` > 1) the loss of a point, like its gradient, is the mean over
    the eot_iter passes (the reference averages the gradient and keeps the last pass's
    loss); success is judged on the last pass, as in the reference.

EOT (expectation over transformation, Athalye et al. 2018), for a stochastic model
(dropout on at inference, random input transformations): each step's gradient is the
mean of `eot_iter` gradients, each of a fresh call of model_fn. AutoAttack's
version="rand" runs APGD-CE and APGD-DLR with eot_iter = 20
(keras_edd.evaluate(attacks="rand")). On a deterministic model it only costs time.
Random starts are stateless draws keyed by (seed, run), so the result is a
function of (x, y, seed).
"""

import collections

import numpy as np
import tensorflow as tf

from keras_edd.attacks import utils
from keras_edd.attacks.apgd_step_size import checkpoint_update, checkpoint_windows
from keras_edd.validation import check_eps

LOSSES = ("ce", "dlr", "dlr_targeted")
NORMS = ("linf", "l2")
# Smallest number of entries of the (merged) logit vector each loss needs.
_MIN_LOGITS = {"ce": 2, "dlr": 3, "dlr_targeted": 4}
_DLR_EPSILON = 1e-12
_NORM_EPSILON = 1e-12
# Subtracted from the outlier logit so that no sort of the merged logits picks it.
_OUT_OF_SORT = 1e9

APGDResult = collections.namedtuple("APGDResult", ["x_adv", "success", "loss", "iterations"])
APGDResult.__doc__ = """APGD result with per-input details.

x_adv: float32 tensor shaped like x. success: bool [batch], a point in the ball
is misclassified (a real class != y on top). loss: float32 [batch], the loss
at the returned point (of the run that produced it). iterations: int64 [batch],
gradient steps spent on the input over all restarts and targets.
"""


def merged_logits(logits, labels, outlier_class):
    """The logits an outlier-aware loss sees: column y = max(Z_y, Z_n), column n pushed
    to -1e9 (out of every sort). Without an outlier class, the logits unchanged."""
    if outlier_class is None:
        return logits
    num_classes = tf.shape(logits)[-1]
    avoided, _ = utils.real_and_other(logits, labels, targeted=False,
                                      outlier_class=outlier_class)
    merged = tf.where(tf.one_hot(labels, num_classes) > 0, avoided[:, None], logits)
    return merged - _OUT_OF_SORT * tf.one_hot(outlier_class, num_classes, dtype=logits.dtype)


def objective(logits, labels, targets=None, *, loss="ce", outlier_class=None):
    """Per-sample loss f the attack maximises (see the module docstring)."""
    if loss == "ce":
        return utils.attack_objective(logits, labels, targeted=False,
                                      outlier_class=outlier_class, loss="ce")
    merged = merged_logits(logits, labels, outlier_class)
    if loss == "dlr":
        top = tf.math.top_k(merged, 3).values
        margin = utils.attack_margin(logits, labels, targeted=False, outlier_class=outlier_class)
        return margin / (top[:, 0] - top[:, 2] + _DLR_EPSILON)
    top = tf.math.top_k(merged, 4).values
    avoided = tf.gather(merged, labels, batch_dims=1)
    target = tf.gather(logits, targets, batch_dims=1)
    return -(avoided - target) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _DLR_EPSILON)


def target_classes(clean_logits, labels, nb_targets, outlier_class=None):
    """int32 [batch, k]: per input the k real classes != y with the highest clean logits,
    best first, k = min(nb_targets, real classes - 1). Never y, never the outlier class."""
    logits = np.array(clean_logits, np.float64)
    rows = np.arange(len(logits))
    logits[rows, np.asarray(labels)] = -np.inf
    if outlier_class is not None:
        logits[:, outlier_class] = -np.inf
    real = logits.shape[1] - (outlier_class is not None)
    k = min(nb_targets, real - 1)
    return np.argsort(-logits, axis=1, kind="stable")[:, :k].astype(np.int32)


def _project(points, x, eps, norm, clip_min, clip_max):
    """P: onto the eps-ball around x, then into the box (which keeps it in the ball)."""
    delta = points - x
    if norm == "linf":
        delta = tf.clip_by_value(delta, -eps, eps)
    else:
        length = _l2_norm(delta)
        delta = delta * tf.minimum(1.0, eps / (length + _NORM_EPSILON))
    return tf.clip_by_value(x + delta, clip_min, clip_max)


def _l2_norm(values):
    axes = list(range(1, values.shape.rank))
    return tf.sqrt(tf.reduce_sum(tf.square(values), axis=axes, keepdims=True))


def _direction(grad, norm):
    return tf.sign(grad) if norm == "linf" else grad / (_l2_norm(grad) + _NORM_EPSILON)


def random_start(x, eps, norm, seed, run, clip_min, clip_max):
    """A uniform point of the eps-ball around each input (clipped to the box), drawn
    statelessly from (seed, run) for the whole batch."""
    key = tf.constant([seed, run], tf.int64)
    if norm == "linf":
        delta = tf.random.stateless_uniform(x.shape, seed=key, minval=-eps, maxval=eps)
    else:
        direction = tf.random.stateless_normal(x.shape, seed=key)
        direction /= _l2_norm(direction) + _NORM_EPSILON
        dims = float(np.prod(x.shape[1:]))
        radius = tf.random.stateless_uniform([x.shape[0]], seed=key + [0, 1]) ** (1.0 / dims)
        delta = direction * tf.reshape(eps * radius, [-1] + [1] * (x.shape.rank - 1))
    return tf.clip_by_value(x + delta, clip_min, clip_max)


@tf.function(reduce_retracing=True)
def _apgd_run(model_fn, x, labels, targets, x_start, skip, eps, nb_iter, windows, rho,
              momentum, clip_min, clip_max, norm, loss, outlier_class, eot_iter=1):
    """One restart (and target) on the inputs with skip = False.

    Returns (x_out, success, loss, iterations), all [batch]-shaped; rows with
    skip = True are left untouched (x_start, False, -inf, 0). eot_iter (a Python int)
    > 1 averages the loss and gradient of each point over that many model calls.
    """
    batch = tf.shape(x)[0]
    rank = x.shape.rank

    def per_sample(values):
        return tf.reshape(values, [-1] + [1] * (rank - 1))

    def one_pass(points, point_labels, point_targets):
        with tf.GradientTape() as tape:
            tape.watch(points)
            logits = model_fn(points)
            values = objective(logits, point_labels, point_targets, loss=loss,
                               outlier_class=outlier_class)
            total = tf.reduce_sum(values)
        return values, tape.gradient(total, points), logits

    def evaluate(points, point_labels, point_targets):
        values, grad, logits = one_pass(points, point_labels, point_targets)
        if eot_iter > 1:  # EOT: the mean over eot_iter calls, success on the last one
            def body(i, value_sum, grad_sum, _):
                values, grad, logits = one_pass(points, point_labels, point_targets)
                return i + 1, value_sum + values, grad_sum + grad, logits
            _, value_sum, grad_sum, logits = tf.while_loop(
                lambda i, *_: i < eot_iter, body, (tf.constant(1), values, grad, logits))
            values, grad = value_sum / eot_iter, grad_sum / eot_iter
        success = utils.attack_success(logits, point_labels, targeted=False,
                                       outlier_class=outlier_class)
        return values, grad, success

    start = tf.where(tf.logical_not(skip))
    f_start, grad_start, success_start = evaluate(
        tf.gather_nd(x_start, start), tf.gather_nd(labels, start), tf.gather_nd(targets, start))
    minus_inf = tf.fill([batch], -np.inf)
    f_full = tf.tensor_scatter_nd_update(minus_inf, start, f_start)
    grad_full = tf.tensor_scatter_nd_update(tf.zeros_like(x), start, grad_start)
    success_full = tf.tensor_scatter_nd_update(tf.zeros([batch], tf.bool), start,
                                               success_start)
    state = dict(
        x=x_start, x_prev=x_start, grad=grad_full, x_max=x_start, grad_max=grad_full,
        x_success=x_start, f_success=f_full, step=tf.fill([batch], 2.0 * eps),
        increases=tf.zeros([batch], tf.int32), previous_loss=f_full, best_loss=f_full,
        best_at_checkpoint=f_full, halved_at_checkpoint=tf.zeros([batch], tf.bool),
        success=success_full, done=tf.logical_or(skip, success_full),
        iterations=tf.zeros([batch], tf.int32))

    def step(k, active, s):
        x_clean = tf.gather_nd(x, active)
        alpha = tf.where(k == 0, 1.0, momentum)
        step = per_sample(s["step"])
        z = _project(s["x"] + step * _direction(s["grad"], norm), x_clean, eps, norm,
                     clip_min, clip_max)
        x_new = _project(s["x"] + alpha * (z - s["x"]) + (1.0 - alpha) * (s["x"] - s["x_prev"]),
                         x_clean, eps, norm, clip_min, clip_max)
        f_new, grad_new, success = evaluate(x_new, tf.gather_nd(labels, active),
                                            tf.gather_nd(targets, active))
        rule = checkpoint_update(s["increases"], s["previous_loss"], s["best_loss"],
                                 s["best_at_checkpoint"], s["halved_at_checkpoint"], f_new,
                                 windows[k + 1], rho)
        improved, halve = per_sample(rule.improved), per_sample(rule.halve)
        x_max = tf.where(improved, x_new, s["x_max"])
        grad_max = tf.where(improved, grad_new, s["grad_max"])
        s.update(
            x_prev=s["x"], x=tf.where(halve, x_max, x_new),
            grad=tf.where(halve, grad_max, grad_new), x_max=x_max, grad_max=grad_max,
            step=tf.where(rule.halve, 0.5 * s["step"], s["step"]),
            x_success=tf.where(per_sample(success), x_new, s["x_success"]),
            f_success=tf.where(success, f_new, s["f_success"]),
            success=success, done=success, iterations=s["iterations"] + 1,
            **{key: getattr(rule, key) for key in (
                "increases", "previous_loss", "best_loss", "best_at_checkpoint",
                "halved_at_checkpoint")})
        return s

    state = utils.loop_until_done(state, nb_iter, step)
    success = state["success"]
    x_out = tf.where(per_sample(success), state["x_success"], state["x_max"])
    loss_out = tf.where(success, state["f_success"], state["best_loss"])
    return x_out, success, loss_out, state["iterations"]


def apgd(model_fn, x, *, eps, y=None, norm="linf", loss="ce", nb_iter=100, nb_restarts=1,
         nb_targets=9, rho=0.75, momentum=0.75, clip_min=0.0, clip_max=1.0,
         outlier_class=None, seed=None, eot_iter=1, return_details=False):
    """Untargeted APGD (L_inf or L2) with the CE, DLR or targeted-DLR loss.

    Args:
      model_fn: callable x -> logits Z(x) (a Keras model is called with
        training=False). Must return logits (DLR is a ratio of logit gaps).
      x: batch of inputs in [clip_min, clip_max].
      eps: radius eps >= 0 of the ball; eps = 0 returns x.
      y: labels to move away from, integer [batch] or one-hot; None = the
        model's own prediction on x (no label leaking).
      norm: "linf" or "l2".
      loss: "ce", "dlr" or "dlr_targeted" (APGD-T: one run per target class).
      nb_iter: iterations per run (>= 0); the checkpoints scale with it.
      nb_restarts: random starts per run (>= 1), each only on the inputs not
        broken yet (with "dlr_targeted": per target).
      nb_targets: "dlr_targeted" only: targets per input, the highest-ranked
        real classes != y on the clean input (capped at real classes - 1).
      rho: condition-1 threshold in (0, 1] (paper: 0.75).
      momentum: alpha in (0, 1] (paper: 0.75; 1 = no momentum).
      clip_min, clip_max: the input box.
      outlier_class: index of the "detected" logit; success then needs a real
        class other than y on top and the losses merge y with it (see the
        module docstring).
      seed: integer seed of the random starts (None: drawn at random).
      eot_iter: model calls whose loss and gradient are averaged per step (>= 1;
        EOT for a stochastic model, see the module docstring; 1: plain APGD).
      return_details: return an APGDResult (x_adv, success, loss, iterations)
        instead of x_adv alone.
    Returns:
      x_adv, a float32 tensor shaped like x: per input the first successful
      iterate found, else the highest-loss point of all runs.
    """
    utils.check_choice("norm", norm, NORMS)
    utils.check_choice("loss", loss, LOSSES)
    nb_iter = utils.check_int("nb_iter", nb_iter, low=0)
    nb_restarts = utils.check_int("nb_restarts", nb_restarts, low=1)
    nb_targets = utils.check_int("nb_targets", nb_targets, low=1)
    eot_iter = utils.check_int("eot_iter", eot_iter, low=1)
    rho = utils.check_real("rho", rho, low=0.0, high=1.0, low_inclusive=False)
    momentum = utils.check_real("momentum", momentum, low=0.0, high=1.0, low_inclusive=False)
    clip_min, clip_max = utils.check_box(clip_min, clip_max)
    if seed is not None:
        seed = utils.check_int("seed", seed, low=0, high=2**31 - 1)
    model_fn = utils.as_model_fn(model_fn)
    x = utils.prepare_inputs(x, clip_min, clip_max)
    eps = check_eps("eps", eps, norm, width=clip_max - clip_min,
                    size=int(np.prod(x.shape[1:])))
    if eps == 0.0 and not return_details:
        return x
    labels, outlier_class, num_classes = utils.resolve_labels(model_fn, x, y, False,
                                                              outlier_class)
    entries = num_classes - (outlier_class is not None)
    if entries < _MIN_LOGITS[loss]:
        raise ValueError(f"loss={loss!r} needs at least {_MIN_LOGITS[loss]} classes "
                         f"(the outlier class merged with y), the model has {num_classes} "
                         f"logits" + (f" with outlier_class={outlier_class}"
                                      if outlier_class is not None else ""))
    if seed is None:
        seed = int(tf.random.uniform([], 0, 2**31 - 1, dtype=tf.int64))
    clean_logits = model_fn(x)
    if loss == "dlr_targeted":
        targets = target_classes(clean_logits, labels.numpy(), nb_targets, outlier_class)
    else:
        targets = labels.numpy()[:, None]
    # The clean point is the first candidate: already misclassified inputs are not attacked.
    success = utils.attack_success(clean_logits, labels, targeted=False,
                                   outlier_class=outlier_class).numpy()
    best_loss = objective(clean_logits, labels, targets[:, 0], loss=loss,
                          outlier_class=outlier_class).numpy()
    x_adv = x.numpy().copy()
    iterations = np.zeros(int(x.shape[0]), np.int64)
    if eps == 0.0:  # details only
        return APGDResult(x, success, best_loss, iterations)
    _runs(model_fn, x, labels, targets, (x_adv, success, best_loss, iterations), eps=eps,
          norm=norm, loss=loss, nb_iter=nb_iter, nb_restarts=nb_restarts, rho=rho,
          momentum=momentum, clip_min=clip_min, clip_max=clip_max,
          outlier_class=outlier_class, seed=seed, eot_iter=eot_iter)
    x_adv = tf.convert_to_tensor(x_adv)
    if not return_details:
        return x_adv
    return APGDResult(x_adv, success, best_loss, iterations)


def _runs(model_fn, x, labels, targets, found, *, eps, norm, loss, nb_iter, nb_restarts, rho,
          momentum, clip_min, clip_max, outlier_class, seed, eot_iter=1):
    """Every target, and per target every restart, on the inputs not broken yet.

    `found` = (x_adv, success, best_loss, iterations), numpy arrays updated in place:
    an input takes a run's point when the run breaks it or, still unbroken, when the
    point's loss is higher. Run r starts from random_start(..., seed, r).
    """
    x_adv, success, best_loss, iterations = found
    constants = dict(
        eps=tf.constant(eps, tf.float32), nb_iter=tf.constant(nb_iter),
        windows=tf.constant(checkpoint_windows(nb_iter)), rho=tf.constant(rho, tf.float32),
        momentum=tf.constant(momentum, tf.float32), clip_min=tf.constant(clip_min),
        clip_max=tf.constant(clip_max), norm=norm, loss=loss, outlier_class=outlier_class,
        eot_iter=eot_iter)
    run = 0
    for target_index in range(targets.shape[1]):
        for _ in range(nb_restarts):
            if success.all():
                break
            x_start = random_start(x, eps, norm, seed, run, clip_min, clip_max)
            run += 1
            x_run, success_run, loss_run, iterations_run = (value.numpy() for value in _apgd_run(
                model_fn, x, labels, tf.constant(targets[:, target_index]), x_start,
                tf.constant(success), **constants))
            todo = ~success
            better = todo & (success_run | (loss_run > best_loss))
            x_adv[better] = x_run[better]
            best_loss[better] = loss_run[better]
            success |= todo & success_run
            iterations += iterations_run
