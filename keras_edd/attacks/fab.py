"""FAB, the fast adaptive boundary attack (Croce & Hein, ICML 2020): minimal perturbations.

FAB looks for the smallest L_inf or L2 perturbation that changes the decision.
Per input, from x^(0) = x (restart 0) or a random point (later restarts), each
iteration linearises the decision boundary at the current iterate x^(k):
  boundary to class k:  pi_k = {z: df_k + dg_k . (z - x^(k)) = 0},
  df_k = Z_k(x^(k)) - Z_a(x^(k)),  dg_k = grad Z_k(x^(k)) - grad Z_a(x^(k)),
with a the class to leave (y), and takes the nearest one, k* = argmin_k
|df_k| / ||dg_k||_q (q the dual norm: L1 for L_inf, L2 for L2). Then
  d_x = proj(x^(k), pi_k*),  d_o = proj(x, pi_k*)    (see `boundary_projection`)
  alpha = min(||d_x|| / (||d_x|| + ||d_o||), alpha_max)
  x^(k+1) = clip((1 - alpha)(x^(k) + eta d_x) + alpha (x + eta d_o)),
a step to the boundary from the iterate, biased towards the boundary point
nearest to x and overshooting by eta. When x^(k+1) is adversarial it is
recorded if its norm ||x^(k+1) - x|| is the smallest so far, and the iterate
moves back towards x: x^(k+1) <- x + beta (x^(k+1) - x). The projection is
the exact minimal-norm point of the hyperplane inside the box
[clip_min, clip_max] (`boundary_projection`).

Variants (the class a to leave, the classes k tried, what counts as success):
  untargeted (nb_targets=None)  a = y, every class k != y; success: argmax != y;
  FAB-T (nb_targets=K)          one run per target t among the K real classes
                                != y ranked highest on the clean input (as in
                                apgd's `target_classes`), k = t only; as in
                                AutoAttack the aim is still argmax != y;
  targeted (targeted=True)      y holds targets t; k = t and a = the other class
                                on top at x^(k); success: argmax = t.

Outlier class (`outlier_class` = index of the "detected" logit of an n + 1
logit model; the adaptive form). The attacker wins only when a real class
other than y is on top, so the region to leave is "y or detected": its logit
is Z_a = max(Z_y, Z_out) (as in apgd's merged logits) and a is whichever of y
and the outlier class is larger at x^(k), so dg_k uses that class's gradient.
The boundaries tried are those between this merged region and each real class
k != y; the outlier class is never a candidate k nor a target, and success is
`utils.attack_success` (a real class != y on top). With targeted=True, reaching
t means beating every other logit, the outlier one included. The merged logit
has a kink where Z_y = Z_out: a class whose boundary is nearest on both sides
of it (the outlier region lying in between) can hold the untargeted variant,
which then fails without ever counting "detected"; FAB-T, heading for each real
class in turn, is not held (tests/test_attacks_fab.py, outlier trap).

Budget. FAB minimises the norm whatever eps is; eps is the budget of the
fixed-eps evaluation: an input counts as broken (success) when the smallest
adversarial point found has norm <= eps, and x_adv is that point, else x. With
early_stop=True (default) an input stops at its first adversarial point within
eps: its outcome at eps is then settled (inputs run independently, so the set
of broken inputs is the one a full run gives) and later targets and restarts
skip it, as AutoAttack's runs do. With early_stop=False every input not
misclassified at x runs every iteration of every target and restart and `norm`
is the smallest perturbation found (robustness curves over eps).

Restarts: restart 0 starts at x; restart r >= 1 at a random point of the
sphere of radius min(norm found so far, eps) / 2 around x (clipped to the box),
L_inf: uniform direction scaled to L_inf length 1, L2: Gaussian direction;
drawn statelessly from (seed, run). In AutoAttack's fixed-eps runs an input
attacked again has found nothing within eps, so the radius is eps / 2 there.

Defaults are AutoAttack's FAB-T (standard version): nb_iter=100, nb_restarts=1,
alpha_max=0.1, eta=1.05, beta=0.9 (and nb_targets=9 for FAB-T).

Differences from the reference code (fra31/auto-attack, fab_base.py):
  * the projection finds the breakpoint by a sort and a count instead of a
    bisection; the result is the same minimiser;
  * the box is [clip_min, clip_max], not [0, 1];
  * the outlier class (above) and targeted=True do not exist there;
  * with early_stop=True an input stops at its first point within eps (same
    success, a point that may be less minimal);
  * a clean input already misclassified is returned as it is (norm 0), as in
    the reference; its `iterations` are 0;
  * the Jacobian is one gradient per class (untargeted) or one gradient of
    df (FAB-T, targeted), in float32.
The loop is one compiled tf.while_loop per run; only inputs not done are
computed on and the loop ends when all are done.
"""

import collections

import numpy as np
import tensorflow as tf

from keras_edd.attacks import utils
from keras_edd.attacks.apgd import target_classes

NORMS = ("linf", "l2")
# Floor of the step lengths in alpha (the reference's 1e-8) and of the dual norms.
_LENGTH_FLOOR = 1e-8
_DUAL_EPSILON = 1e-12
# Hyperplane coefficients at most this large count as zero (the coordinate stays put).
_ZERO_WEIGHT = 1e-12

FABResult = collections.namedtuple("FABResult", ["x_adv", "success", "norm", "x_min",
                                                 "iterations"])
FABResult.__doc__ = """FAB result with per-input details.

x_adv: float32 tensor shaped like x: x_min where norm <= eps, else x.
success: bool [batch], an adversarial point within eps was found (norm <= eps).
norm: float32 [batch], the smallest perturbation ||x_min - x|| found in the
  attack's norm, whether or not it is within eps; 0 for an input misclassified
  at x, inf when none was found.
x_min: float32 [batch, ...], that point (x where none was found).
iterations: int64 [batch], steps spent on the input over all targets and restarts.
"""


def boundary_projection(points, weights, offsets, norm, clip_min, clip_max):
    """The smallest step onto a hyperplane that stays in the box, solved exactly.

    Per row: delta minimising ||delta||_p (p = inf or 2) subject to
    w . (t + delta) = b and clip_min <= t + delta <= clip_max, for t = `points`,
    w = `weights` (both [batch, d]) and b = `offsets` [batch]. When the
    hyperplane misses the box, the box point that gets closest to it in w (each
    coordinate at its bound).

    With r = b - w . t and s_i = sign(r w_i), the minimiser moves each coordinate
    towards the hyperplane, delta_i = s_i min(mu c_i, room_i), with room_i its
    distance to the box face it moves to and c_i = 1 (L_inf) or |w_i| (L2, the
    KKT point clip(mu w)). The progress sum_i |w_i| min(mu c_i, room_i) is
    piecewise linear and increasing in mu, with breakpoints room_i / c_i: the
    breakpoints are sorted, the progress at each is a cumulative sum, and mu is
    solved on the segment where it reaches |r|.
    """
    required = offsets - tf.reduce_sum(weights * points, axis=1)
    direction = tf.sign(weights) * tf.sign(required)[:, None]
    magnitude = tf.abs(weights)
    live = magnitude > _ZERO_WEIGHT
    room = tf.maximum(tf.where(direction > 0, clip_max - points, points - clip_min), 0.0)
    if norm == "linf":
        rate = tf.where(live, 1.0, 0.0)
        saturation = tf.where(live, room, 0.0)
    else:
        rate = tf.where(live, magnitude, 0.0)
        saturation = tf.where(live, room / tf.where(live, magnitude, 1.0), 0.0)
    slope = magnitude * rate
    order = tf.argsort(saturation, axis=1, stable=True)
    saturation_sorted = tf.gather(saturation, order, batch_dims=1)
    slope_sorted = tf.gather(slope, order, batch_dims=1)
    full_sorted = slope_sorted * saturation_sorted
    before = tf.cumsum(full_sorted, axis=1, exclusive=True)  # saturated below breakpoint j
    tail = tf.cumsum(slope_sorted, axis=1, reverse=True)  # unsaturated from j on
    progress_at = before + full_sorted + saturation_sorted * (tail - slope_sorted)
    need = tf.abs(required)
    count = tf.reduce_sum(tf.cast(progress_at < need[:, None], tf.int32), axis=1)
    width = tf.shape(points)[1]
    segment = tf.minimum(count, width - 1)[:, None]
    upper = tf.gather(saturation_sorted, segment, batch_dims=1)[:, 0]
    lower = tf.where(segment[:, 0] > 0,
                     tf.gather(saturation_sorted, tf.maximum(segment - 1, 0),
                               batch_dims=1)[:, 0], 0.0)
    mu = tf.math.divide_no_nan(need - tf.gather(before, segment, batch_dims=1)[:, 0],
                               tf.gather(tail, segment, batch_dims=1)[:, 0])
    mu = tf.clip_by_value(mu, lower, upper)
    mu = tf.where(count >= width, np.inf, mu)  # out of reach: every coordinate at its bound
    return direction * rate * tf.minimum(mu[:, None], saturation)


def _norm(values, norm):
    """Per-row L_inf or L2 norm of a [batch, d] tensor."""
    if norm == "linf":
        return tf.reduce_max(tf.abs(values), axis=1)
    return tf.sqrt(tf.reduce_sum(tf.square(values), axis=1))


def _avoided_class(logits, labels, outlier_class):
    """a: y, or whichever of y and the outlier class has the larger logit."""
    if outlier_class is None:
        return labels
    own = tf.gather(logits, labels, batch_dims=1)
    return tf.where(logits[:, outlier_class] > own, outlier_class, labels)


def _jacobian(model_fn, points):
    """(dZ/dx [n, classes, d], Z [n, classes]), one gradient per class: as fast as
    tape.batch_jacobian here and much quicker to trace (no pfor)."""
    batch = tf.shape(points)[0]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(points)
        logits = model_fn(points)
        columns = [logits[:, k] for k in range(logits.shape[-1])]
    jacobian = tf.stack([tape.gradient(column, points) for column in columns], axis=1)
    del tape
    return tf.reshape(jacobian, [batch, logits.shape[-1], -1]), logits


def _boundary(model_fn, points, labels, targets, mode, norm, outlier_class):
    """(df, dg [n, d]) of the linearised boundary the step heads for (module docstring).

    mode "untargeted": the nearest of the boundaries to every class k != a (never
    y nor the outlier class), from the Jacobian; "fab_t": the boundary to targets;
    "targeted": labels are targets t, the boundary between t and the other class
    on top.
    """
    batch = tf.shape(points)[0]
    if mode == "untargeted":
        jacobian, logits = _jacobian(model_fn, points)
        avoided = _avoided_class(logits, labels, outlier_class)
        df = logits - tf.gather(logits, avoided, batch_dims=1)[:, None]
        dg = jacobian - tf.gather(jacobian, avoided, batch_dims=1)[:, None]
        dual = (tf.reduce_sum(tf.abs(dg), axis=2) if norm == "linf"
                else tf.sqrt(tf.reduce_sum(tf.square(dg), axis=2)))
        distance = tf.abs(df) / (dual + _DUAL_EPSILON)
        excluded = utils.avoided_mask(labels, tf.shape(logits)[1], outlier_class) > 0
        nearest = tf.argmin(tf.where(excluded, np.inf, distance), axis=1, output_type=tf.int32)
        return (tf.gather(df, nearest, batch_dims=1),
                tf.gather(dg, nearest, batch_dims=1))
    with tf.GradientTape() as tape:
        tape.watch(points)
        logits = model_fn(points)
        if mode == "fab_t":
            avoided, _ = utils.real_and_other(logits, labels, targeted=False,
                                              outlier_class=outlier_class)
            df = tf.gather(logits, targets, batch_dims=1) - avoided
        else:
            df = utils.attack_margin(logits, labels, targeted=True)
        total = tf.reduce_sum(df)
    return df, tf.reshape(tape.gradient(total, points), [batch, -1])


@tf.function(reduce_retracing=True)
def _fab_run(model_fn, x, labels, targets, x_start, skip, eps, nb_iter, alpha_max, eta, beta,
             clip_min, clip_max, early_stop, norm, mode, outlier_class):
    """One restart (and target) on the inputs with skip = False.

    Returns (x_min, norm, iterations), [batch]-shaped: the smallest adversarial
    iterate of the run and its norm (x and inf where none), steps taken.
    """
    batch = tf.shape(x)[0]
    rank = x.shape.rank

    def flat(values):
        return tf.reshape(values, [tf.shape(values)[0], -1])

    def per_sample(values):
        return tf.reshape(values, [-1] + [1] * (rank - 1))

    state = dict(x=x_start, x_min=x, norm=tf.fill([batch], np.inf), done=skip,
                 iterations=tf.zeros([batch], tf.int32))

    def step(k, active, s):
        origin = tf.gather_nd(x, active)
        point_labels = tf.gather_nd(labels, active)
        df, dg = _boundary(model_fn, s["x"], point_labels, tf.gather_nd(targets, active),
                           mode, norm, outlier_class)
        current = flat(s["x"])
        offsets = tf.reduce_sum(dg * current, axis=1) - df
        steps = boundary_projection(tf.concat([current, flat(origin)], 0),
                                    tf.concat([dg, dg], 0), tf.concat([offsets, offsets], 0),
                                    norm, clip_min, clip_max)
        step_x, step_origin = tf.split(steps, 2)
        length_x = tf.maximum(_norm(step_x, norm), _LENGTH_FLOOR)
        length_origin = tf.maximum(_norm(step_origin, norm), _LENGTH_FLOOR)
        alpha = tf.minimum(length_x / (length_x + length_origin), alpha_max)[:, None]
        new = tf.clip_by_value((1.0 - alpha) * (current + eta * step_x)
                               + alpha * (flat(origin) + eta * step_origin), clip_min, clip_max)
        new = tf.reshape(new, tf.shape(origin))
        logits = model_fn(new)
        success = utils.attack_success(logits, point_labels, targeted=(mode == "targeted"),
                                       outlier_class=outlier_class)
        distance = _norm(flat(new - origin), norm)
        better = tf.logical_and(success, distance < s["norm"])
        s["x_min"] = tf.where(per_sample(better), new, s["x_min"])
        s["norm"] = tf.where(better, distance, s["norm"])
        s["x"] = tf.where(per_sample(success), origin + beta * (new - origin), new)
        s["done"] = tf.logical_and(early_stop, s["norm"] <= eps)
        s["iterations"] = s["iterations"] + 1
        return s

    state = utils.loop_until_done(state, nb_iter, step)
    return state["x_min"], state["norm"], state["iterations"]


def random_start(x, radius, norm, seed, run, clip_min, clip_max):
    """x plus a random point of the sphere of radius `radius` [batch] (L_inf: a uniform
    draw scaled to max |.| = 1), clipped to the box; stateless in (seed, run)."""
    key = tf.constant([seed, run], tf.int64)
    if norm == "linf":
        direction = tf.random.stateless_uniform(x.shape, seed=key, minval=-1.0, maxval=1.0)
    else:
        direction = tf.random.stateless_normal(x.shape, seed=key)
    length = _norm(tf.reshape(direction, [x.shape[0], -1]), norm)
    scale = tf.reshape(tf.cast(radius, tf.float32) / tf.maximum(length, _DUAL_EPSILON),
                       [-1] + [1] * (x.shape.rank - 1))
    return tf.clip_by_value(x + scale * direction, clip_min, clip_max)


def fab(model_fn, x, *, eps, y=None, norm="linf", targeted=False, nb_targets=None,
        nb_iter=100, nb_restarts=1, alpha_max=0.1, eta=1.05, beta=0.9, early_stop=True,
        clip_min=0.0, clip_max=1.0, outlier_class=None, seed=None, return_details=False):
    """FAB (L_inf or L2): untargeted, FAB-T over the top classes, or targeted.

    Args:
      model_fn: callable x -> logits Z(x) (a Keras model is called with
        training=False).
      x: batch of inputs in [clip_min, clip_max].
      eps: budget >= 0 of the fixed-eps evaluation (see the module docstring);
        the attack minimises the norm whatever eps is. eps = 0 returns x at once
        (with return_details the attack still runs, for the minimal norms).
      y: labels to move away from (untargeted, FAB-T) or targets t (targeted),
        integer [batch] or one-hot; None = the model's own prediction on x
        (untargeted only).
      norm: "linf" or "l2".
      targeted: reach the targets in y (argmax = t) instead of leaving y.
      nb_targets: None: untargeted FAB, the nearest linearised boundary of all
        classes at each step. An integer K >= 1: FAB-T, one run per target, the
        K real classes != y ranked highest on x (capped at real classes - 1);
        AutoAttack's standard version uses 9. Not with targeted=True.
      nb_iter: iterations per run (>= 0; AutoAttack: 100).
      nb_restarts: runs per target (>= 1): restart 0 from x, the others random.
      alpha_max: cap in [0, 1] of the bias towards the boundary point nearest x.
      eta: overshoot >= 1 of each step.
      beta: backward step in (0, 1] towards x after an adversarial iterate.
      early_stop: stop an input at its first adversarial point within eps
        (False: run everything and minimise the norm, for robustness curves).
      clip_min, clip_max: the input box.
      outlier_class: index of the "detected" logit; success then needs a real
        class other than y on top (see the module docstring).
      seed: integer seed of the random restarts (None: drawn at random).
      return_details: return a FABResult (x_adv, success, norm, x_min,
        iterations) instead of x_adv alone.
    Returns:
      x_adv, a float32 tensor shaped like x: the smallest adversarial point
      found where its norm is <= eps, else x.
    """
    eps = utils.check_real("eps", eps, low=0.0)
    utils.check_choice("norm", norm, NORMS)
    if not isinstance(targeted, (bool, np.bool_)):
        raise ValueError(f"targeted={targeted!r}: expected True or False")
    if nb_targets is not None:
        nb_targets = utils.check_int("nb_targets", nb_targets, low=1)
        if targeted:
            raise ValueError(f"nb_targets={nb_targets}: FAB-T is untargeted, "
                             "targeted=True takes its targets from y (use nb_targets=None)")
    nb_iter = utils.check_int("nb_iter", nb_iter, low=0)
    nb_restarts = utils.check_int("nb_restarts", nb_restarts, low=1)
    alpha_max = utils.check_real("alpha_max", alpha_max, low=0.0, high=1.0)
    eta = utils.check_real("eta", eta, low=1.0)
    beta = utils.check_real("beta", beta, low=0.0, high=1.0, low_inclusive=False)
    if not isinstance(early_stop, (bool, np.bool_)):
        raise ValueError(f"early_stop={early_stop!r}: expected True or False")
    clip_min, clip_max = utils.check_box(clip_min, clip_max)
    if seed is not None:
        seed = utils.check_int("seed", seed, low=0, high=2**31 - 1)
    model_fn = utils.as_model_fn(model_fn)
    x = utils.prepare_inputs(x, clip_min, clip_max)
    if eps == 0.0 and not return_details:
        return x
    labels, outlier_class, _ = utils.resolve_labels(model_fn, x, y, bool(targeted),
                                                    outlier_class)
    if seed is None:
        seed = int(tf.random.uniform([], 0, 2**31 - 1, dtype=tf.int64))
    clean_logits = model_fn(x)
    if targeted:
        mode, targets = "targeted", labels.numpy()[:, None]
    elif nb_targets is None:
        mode, targets = "untargeted", labels.numpy()[:, None]
    else:
        mode = "fab_t"
        targets = target_classes(clean_logits, labels.numpy(), nb_targets, outlier_class)
    # The clean point first: an input already misclassified (or at its target) has norm 0.
    broken = utils.attack_success(clean_logits, labels, targeted=bool(targeted),
                                  outlier_class=outlier_class).numpy()
    found = (x.numpy().copy(), np.where(broken, 0.0, np.inf).astype(np.float32),
             np.zeros(int(x.shape[0]), np.int64))
    _runs(model_fn, x, labels, targets, broken, found, eps=eps, norm=norm, mode=mode,
          nb_iter=nb_iter, nb_restarts=nb_restarts, alpha_max=alpha_max, eta=eta, beta=beta,
          early_stop=bool(early_stop), clip_min=clip_min, clip_max=clip_max,
          outlier_class=outlier_class, seed=seed)
    x_min, norms, iterations = found
    success = norms <= eps
    x_adv = tf.convert_to_tensor(np.where(
        success.reshape((-1,) + (1,) * (x.shape.rank - 1)), x_min, x.numpy()))
    if not return_details:
        return x_adv
    return FABResult(x_adv, success, norms, tf.convert_to_tensor(x_min), iterations)


def _runs(model_fn, x, labels, targets, broken, found, *, eps, norm, mode, nb_iter,
          nb_restarts, alpha_max, eta, beta, early_stop, clip_min, clip_max, outlier_class,
          seed):
    """Every target, and per target every restart, on the inputs still to attack.

    `found` = (x_min, norm, iterations), numpy arrays updated in place: an input
    takes a run's point when its norm is smaller. Inputs broken at x are never
    attacked; with early_stop, neither are those with a point within eps.
    Run r >= 1 of a target starts from random_start(..., seed, run index).
    """
    x_min, norms, iterations = found
    constants = dict(
        eps=tf.constant(eps, tf.float32), nb_iter=tf.constant(nb_iter),
        alpha_max=tf.constant(alpha_max, tf.float32), eta=tf.constant(eta, tf.float32),
        beta=tf.constant(beta, tf.float32), clip_min=tf.constant(clip_min),
        clip_max=tf.constant(clip_max), early_stop=tf.constant(early_stop), norm=norm,
        mode=mode, outlier_class=outlier_class)
    run = 0
    for target_index in range(targets.shape[1]):
        for restart in range(nb_restarts):
            skip = broken | (norms <= eps) if early_stop else broken.copy()
            if skip.all():
                return
            if restart == 0:
                x_start = x
            else:
                radius = 0.5 * np.minimum(norms, eps)
                x_start = random_start(x, radius, norm, seed, run, clip_min, clip_max)
            run += 1
            x_run, norm_run, iterations_run = (value.numpy() for value in _fab_run(
                model_fn, x, labels, tf.constant(targets[:, target_index]), x_start,
                tf.constant(skip), **constants))
            better = ~skip & (norm_run < norms)
            x_min[better] = x_run[better]
            norms[better] = norm_run[better]
            iterations += iterations_run
