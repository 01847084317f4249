"""``MarkovChain``: one latent Markov chain per sequence, forward-backward.

Data carry leading axes (B, T): B sequences padded to a common length T, with
``lengths`` (B,) giving each sequence's valid length. Padded steps contribute
nothing: the forward and backward recursions pass through them unchanged (an
identity transition), their posterior marginals are exactly 0 and no
transition is counted across them.

The recursions are written for ONE sequence and vmapped over sequences. The
emission table is in log space. The sequential form is a ``lax.scan`` over
normalised messages (Rabiner 1989): each step's emission densities are shifted
by their maximum and exponentiated once, outside the loop, and the
log-likelihood accumulates the logs of the shifts and normalisers, so the loop
itself needs no exp or log. The parallel form computes the prefix and suffix
products of the per-step log-space transfer matrices with
``lax.associative_scan`` (Sarkka & Garcia-Fernandez 2021): O(K^3 T) work in
O(log T) depth, the faster form for long sequences on a GPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import _buckets, _compile_cache, _validation
from ._base import EStep


class ChainFactors(NamedTuple):
    """The three log-density factors of a chain model (``MarkovChain``).

    The joint log-density of one sequence is
    ``initial(params, z_0) + sum_t transition(params, z_{t-1}, z_t)
    + sum_t emission(params, x_t, z_t)``.

    Attributes:
        initial: ``initial(params, z) -> scalar``, log p(z_0 = z).
        transition: ``transition(params, z_prev, z) -> scalar``,
            log p(z_t = z | z_{t-1} = z_prev).
        emission: ``emission(params, x, z) -> scalar``, log p(x_t = x | z_t = z)
            for ONE time step ``x``.
    """

    initial: Callable[..., Any]
    transition: Callable[..., Any]
    emission: Callable[..., Any]


class ChainPosterior(NamedTuple):
    """Posterior of the latent chains (the E-step of ``MarkovChain``).

    Attributes:
        marginals: (B, T, K) posterior state probabilities p(z_t = k | x);
            rows sum to 1 at valid steps and are exactly 0 at padded steps.
        transitions: (B, K, K) expected transition counts
            sum_t p(z_{t-1} = j, z_t = k | x) over the valid steps.
    """

    marginals: jax.Array
    transitions: jax.Array


class _Sweep(NamedTuple):
    """Forward-backward output for one sequence, up to per-step constants."""

    log_alpha: jax.Array  # (T, K) log forward messages, any shift per step
    log_beta: jax.Array  # (T, K) log backward messages, any shift per step
    log_likelihood: jax.Array  # scalar log p(x_{0:L})


@dataclasses.dataclass(frozen=True)
class MarkovChain:
    """A latent Markov chain z_0, ..., z_{T-1} in {0, ..., K-1} per sequence.

    The model's ``log_joint`` is a :class:`ChainFactors`. The E-step is
    forward-backward in log space and returns a :class:`ChainPosterior`.

    Args:
        num_states: K, the number of hidden states.
        parallel: use the parallel-in-time (``lax.associative_scan``)
            recursions instead of the sequential ``lax.scan``. The results
            agree; the parallel form does O(K^3 T) work in O(log T) depth and
            pays off for long sequences on a GPU (about 1000x faster than the
            sequential scan for T = 100,000 on an H200), not on a CPU (about
            15x slower there). None (the default) chooses by JAX's default
            backend when the chain is built: parallel on a GPU or TPU,
            sequential on a CPU.

    Examples:
        >>> import jax.numpy as jnp, jax.scipy.stats as st, jaxem
        >>> factors = jaxem.ChainFactors(
        ...     initial=lambda p, z: jnp.log(p["startprob"][z]),
        ...     transition=lambda p, i, j: jnp.log(p["transmat"][i, j]),
        ...     emission=lambda p, x, z: st.norm.logpdf(x, p["means"][z]))
        >>> model = jaxem.LatentModel(factors, jaxem.MarkovChain(2))
        >>> params = {"startprob": jnp.array([0.5, 0.5]),
        ...           "transmat": jnp.array([[0.9, 0.1], [0.2, 0.8]]),
        ...           "means": jnp.array([-1.0, 1.0])}
        >>> x = jnp.array([[-1.2, -0.8, 1.1, 0.9]])          # (B=1, T=4)
        >>> jaxem.viterbi(model, params, x).tolist()
        [[0, 0, 1, 1]]
    """

    num_states: int
    parallel: bool | None = None

    def __post_init__(self):
        if (
            isinstance(self.num_states, bool)
            or not isinstance(self.num_states, int)
            or self.num_states < 1
        ):
            raise ValueError(
                f"num_states: expected a positive int, got {self.num_states!r}"
            )
        if self.parallel is None:
            object.__setattr__(self, "parallel", _parallel_by_default())
        if not isinstance(self.parallel, bool):
            raise ValueError(
                f"parallel: expected a bool or None, got {self.parallel!r}"
            )

    num_batch_axes = 2

    @property
    def num_values(self) -> int:
        """K, the number of states (the name every latent structure shares)."""
        return self.num_states

    def check_log_joint(self, log_joint) -> None:
        if not isinstance(log_joint, ChainFactors) or not all(
            callable(f) for f in log_joint
        ):
            raise ValueError(
                "log_joint: a MarkovChain model needs "
                "jaxem.ChainFactors(initial, transition, emission), each a "
                f"function returning a scalar log-density; got {log_joint!r}"
            )

    # ------------------------------------------------------------- factors
    def log_factors(self, model, params, data):
        """Initial (K,), transition (K, K) and emission (B, T, K) log-densities.

        Uses ``model.log_joint_table(params, data)`` for the emission table when
        the model has one, else vmaps the emission factor over states, steps
        and sequences.
        """
        factors = model.log_joint
        zs = jnp.arange(self.num_states)
        log_init = jax.vmap(lambda z: factors.initial(params, z))(zs)
        log_trans = jax.vmap(
            lambda i: jax.vmap(lambda j: factors.transition(params, i, j))(zs)
        )(zs)
        if model.log_joint_table is not None:
            log_emit = model.log_joint_table(params, data)
        else:

            def per_step(x):
                return jax.vmap(lambda z: factors.emission(params, x, z))(zs)

            log_emit = jax.vmap(jax.vmap(per_step))(data)
        return log_init, log_trans, log_emit

    # -------------------------------------------------------------- E-step
    def e_step(
        self, model, params, data, weights=None, lengths=None, evidence=None
    ) -> EStep:
        """Posterior marginals, transition counts and log-likelihoods.

        ``evidence``: optional (B, T, K) log-evidence added to the emission
        log-potentials (``jaxem._evidence``); ignored at padded steps.

        Returns:
            ``EStep(ChainPosterior, total weighted log-likelihood, (B,)
            per-sequence log-likelihoods)``.
        """
        data = _as_batch(model, data)
        valid = _valid_mask(data, lengths)
        data = data if lengths is None else _fill_padding(data, valid)
        log_init, log_trans, log_emit = self.log_factors(model, params, data)
        if evidence is not None:
            evidence = jnp.asarray(evidence).astype(log_emit.dtype)
            log_emit = log_emit + jnp.where(valid[..., None], evidence, 0.0)

        def one(emit, mask):
            if self.parallel:
                s = _parallel_sweep(log_init, log_trans, emit, mask)
                marginals, transitions = _two_slice(s, log_trans, emit, mask)
                # A length-0 sequence (padding) has log-likelihood 0.
                return marginals, transitions, jnp.where(mask[0], s.log_likelihood, 0.0)
            return _sequential_smoother(log_init, log_trans, emit, mask)

        marginals, transitions, per_seq = jax.vmap(one)(log_emit, valid)
        total = _weighted_sum(per_seq, weights)
        return EStep(ChainPosterior(marginals, transitions), total, per_seq)

    def expected_log_joint(
        self, model, params, data, posterior, weights=None, lengths=None
    ) -> jax.Array:
        """Q(params) = sum_b w_b E[log p(x_b, z_b | params)] under ``posterior``.

        Uses the summed (B, K, K) transition counts against the K x K transition
        table, so Q costs one emission table plus O(B K^2).
        """
        valid = _valid_mask(data, lengths)
        data = data if lengths is None else _fill_padding(data, valid)
        log_init, log_trans, log_emit = self.log_factors(model, params, data)
        gamma, xi = posterior.marginals, posterior.transitions
        first = _dot(gamma[:, 0, :], log_init[None, :], axes=(-1,))
        trans = _dot(xi, log_trans[None], axes=(-2, -1))
        emit = _dot(gamma, log_emit, axes=(-2, -1))
        return _weighted_sum(first + trans + emit, weights)

    def num_observations(self, data, weights=None, lengths=None) -> jax.Array:
        """Total number of valid time steps (weighted by sequence weights)."""
        b, t = jax.tree.leaves(data)[0].shape[:2]
        steps = jnp.full((b,), t) if lengths is None else jnp.asarray(lengths)
        if weights is None:
            return jnp.sum(steps)
        return jnp.sum(weights * steps)

    def validate(self, model, data, weights=None, lengths=None) -> None:
        """Host-side checks of ``fit``'s inputs; raises ``ValueError``."""
        b, t = _validation.check_data_leaves("data", data, 2)
        _validation.check_event_shape("data", data, 2, model.event_shape)
        check_lengths(lengths, b, t, minimum=0)
        _validation.check_weights("weights", weights, b)


def _parallel_by_default() -> bool:
    """The parallel scan where it is fast: JAX's default backend is an
    accelerator (GPU or TPU), not a CPU."""
    return jax.default_backend() in ("gpu", "tpu")


def check_lengths(
    lengths, num_sequences: int, num_steps: int, minimum: int = 1
) -> None:
    """``lengths`` must be None or (B,) integers in [minimum, T], not all 0.

    ``fit`` takes ``minimum=0``: a length-0 sequence (padding, e.g. from
    ``jaxem.shard``) contributes nothing.
    """
    if lengths is None:
        return
    arr = np.asarray(lengths)
    if arr.ndim != 1 or arr.shape[0] != num_sequences:
        raise ValueError(
            f"lengths: expected shape ({num_sequences},) (one per sequence), got "
            f"{arr.shape}"
        )
    arr = _validation.check_integers("lengths", arr)
    if np.any(arr < minimum) or np.any(arr > num_steps):
        raise ValueError(
            f"lengths: every length must lie in [{minimum}, {num_steps}] (the "
            f"padded length T), got min {arr.min()} and max {arr.max()}"
        )
    if not np.any(arr > 0):
        raise ValueError("lengths: every sequence has length 0")


# ------------------------------------------------------------------ helpers
def _as_batch(model, data):
    """Read one unbatched sequence (T, ...) as a batch of one (B=1).

    Only when the model declares its ``event_shape``, so the rank tells a
    single sequence from a batch (inference helpers; ``fit`` wants (B, T, ...)).
    """
    shape = model.event_shape
    leaves = jax.tree.leaves(data)
    if shape is not None and len(leaves) == 1 and jnp.ndim(leaves[0]) == 1 + len(shape):
        return jax.tree.map(lambda x: jnp.asarray(x)[None], data)
    return data


def _dot(a, b, axes):
    """sum over ``axes`` of a * b, with 0 * (-inf) = 0 (impossible events)."""
    return jnp.sum(jnp.where(a > 0, a * b, 0.0), axis=axes)


def _weighted_sum(per_seq, weights):
    if weights is None:
        return jnp.sum(per_seq)
    return jnp.sum(jnp.where(weights > 0, weights * per_seq, 0.0))


def _valid_mask(data, lengths):
    b, t = jax.tree.leaves(data)[0].shape[:2]
    if lengths is None:
        return jnp.ones((b, t), bool)
    return jnp.arange(t)[None, :] < jnp.asarray(lengths)[:, None]


def _fill_padding(data, valid):
    """Replace padded steps by the sequence's first step.

    Padding may hold any finite value; copying a real observation keeps every
    factor (and its gradient) finite there, so masking never meets NaN.
    """

    def fill(leaf):
        leaf = jnp.asarray(leaf)
        mask = valid.reshape(valid.shape + (1,) * (leaf.ndim - 2))
        return jnp.where(mask, leaf, leaf[:, :1])

    return jax.tree.map(fill, data)


def _log_normalise(v):
    """(log-sum-exp of v, v shifted so it sums to one in probability)."""
    m = jnp.max(v, axis=-1, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    log_z = m[..., 0] + jnp.log(jnp.sum(jnp.exp(v - m), axis=-1))
    return log_z, v - log_z[..., None]


def _sequential_smoother(log_init, log_trans, log_emit, valid):
    """Forward-backward for one sequence with two ``lax.scan``s.

    The emission table stays in log space; each step's densities are shifted
    by their maximum before exponentiation, once for the whole sequence, so
    the scans carry normalised messages and need no exp or log per step
    (Rabiner's scaling; hmmlearn's and dynamax's default). Relative densities
    below ``exp(_FLOOR)`` are floored there, which keeps the messages finite
    for data the model deems impossible and changes nothing else.

    Returns:
        marginals (T, K), summed transition counts (K, K), log-likelihood.
    """
    trans = jnp.exp(log_trans)
    shift = jnp.max(log_emit, axis=-1, keepdims=True)
    floor = jnp.log(jnp.finfo(log_emit.dtype).tiny) + 10.0
    probs = jnp.exp(jnp.maximum(log_emit - shift, floor))
    first = jnp.exp(log_init) * probs[0]
    norm0 = jnp.sum(first)

    def forward(alpha, inputs):
        p, ok = inputs
        a = (alpha @ trans) * p
        norm = jnp.sum(a)
        a = jnp.where(ok, a / norm, alpha)
        return a, (a, jnp.where(ok, norm, 1.0))

    _, (alpha_rest, norms) = jax.lax.scan(
        forward, first / norm0, (probs[1:], valid[1:])
    )
    alpha = jnp.concatenate([(first / norm0)[None], alpha_rest])
    steps = jnp.concatenate([norm0[None], norms])
    log_lik = jnp.sum(jnp.where(valid, jnp.log(steps) + shift[:, 0], 0.0))

    def backward(beta_next, inputs):
        p_next, ok_next = inputs
        weighted = p_next * beta_next
        b = trans @ weighted
        norm = jnp.sum(b)
        b = jnp.where(ok_next, b / norm, jnp.ones_like(b))
        return b, (b, jnp.where(ok_next, weighted / norm, 0.0))

    k = log_init.shape[0]
    ones = jnp.ones((k,), log_emit.dtype)
    _, (beta_rest, forward_weights) = jax.lax.scan(
        backward, ones, (probs[1:], valid[1:]), reverse=True
    )
    beta = jnp.concatenate([beta_rest, ones[None]])
    joint = alpha * beta
    total = jnp.sum(joint, axis=-1)
    ok = valid & (total > 0)
    marginals = jnp.where(ok[:, None], joint / jnp.where(ok, total, 1.0)[:, None], 0.0)
    # xi_t[j, k] = alpha_t[j] A[j, k] p_{t+1}[k] beta_{t+1}[k] / Z_t with
    # Z_t = alpha_t . (A (p_{t+1} beta_{t+1})) = total_t (both use one norm).
    scale = jnp.where(ok[:-1], 1.0 / jnp.where(ok[:-1], total[:-1], 1.0), 0.0)
    transitions = trans * ((alpha[:-1] * scale[:, None]).T @ forward_weights)
    return marginals, transitions, log_lik


def _log_matmul(x, y):
    """log(exp(x) @ exp(y)) for (..., K, K) log-space matrices, stably."""
    mx = jnp.max(x, axis=-1, keepdims=True)
    mx = jnp.where(jnp.isfinite(mx), mx, 0.0)
    my = jnp.max(y, axis=-2, keepdims=True)
    my = jnp.where(jnp.isfinite(my), my, 0.0)
    prod = jnp.matmul(jnp.exp(x - mx), jnp.exp(y - my))
    return jnp.log(prod) + mx + my


def _parallel_sweep(log_init, log_trans, log_emit, valid) -> _Sweep:
    """Forward-backward for one sequence with ``lax.associative_scan``.

    Step t >= 1 is the log-space transfer matrix M_t[j, k] = log A[j, k] +
    log p(x_t | k) (the identity at padded steps); alpha_t is the prefix
    product alpha_0 M_1 ... M_t and beta_t the suffix product M_{t+1} ... 1.
    """
    k = log_init.shape[0]
    eye = jnp.where(jnp.eye(k, dtype=bool), 0.0, -jnp.inf).astype(log_emit.dtype)
    steps = log_trans[None, :, :] + log_emit[1:, None, :]
    steps = jnp.where(valid[1:, None, None], steps, eye[None])
    first = jnp.broadcast_to((log_init + log_emit[0])[None, :], (k, k))
    prefix = jax.lax.associative_scan(
        _log_matmul, jnp.concatenate([first[None], steps])
    )
    log_alpha = prefix[:, 0, :]
    suffix = jax.lax.associative_scan(
        lambda later, earlier: _log_matmul(earlier, later), steps, reverse=True
    )
    lb_rest = jax.nn.logsumexp(suffix, axis=-1)
    log_beta = jnp.concatenate([lb_rest, jnp.zeros((1, k), log_emit.dtype)])
    ll = jax.nn.logsumexp(log_alpha[-1])
    return _Sweep(log_alpha, log_beta, ll)


def _two_slice(sweep: _Sweep, log_trans, log_emit, valid):
    """Marginals (T, K) and summed transition counts (K, K) from messages.

    The counts sum_t xi_t with xi_t[j, k] proportional to
    alpha_t[j] A[j, k] p(x_{t+1} | k) beta_{t+1}[k] are one (K, T) @ (T, K)
    product, each step normalised on its own so per-step shifts cancel.
    """
    _, log_gamma = _log_normalise(sweep.log_alpha + sweep.log_beta)
    marginals = jnp.where(valid[:, None], jnp.exp(log_gamma), 0.0)
    trans = jnp.exp(log_trans)
    _, la = _log_normalise(sweep.log_alpha[:-1])
    _, v = _log_normalise(log_emit[1:] + sweep.log_beta[1:])
    alpha, u = jnp.exp(la), jnp.exp(v)
    norm = jnp.sum(alpha * (u @ trans.T), axis=-1)
    ok = valid[1:] & (norm > 0)
    scaled = jnp.where(ok[:, None], alpha / jnp.where(ok, norm, 1.0)[:, None], 0.0)
    transitions = trans * (scaled.T @ u)
    return marginals, transitions


# ------------------------------------------------------------------ Viterbi
def _viterbi_one(log_init, log_trans, log_emit, valid):
    """Most likely path (T,) and its log joint density for one sequence."""
    k = log_init.shape[0]
    states = jnp.arange(k)
    delta0 = log_init + log_emit[0]

    def forward(delta, inputs):
        emit, ok = inputs
        scores = delta[:, None] + log_trans
        best = jnp.argmax(scores, axis=0)
        new = jnp.max(scores, axis=0) + emit
        return jnp.where(ok, new, delta), jnp.where(ok, best, states)

    delta, pointers = jax.lax.scan(forward, delta0, (log_emit[1:], valid[1:]))
    last = jnp.argmax(delta)

    def backward(state, pointer):
        prev = pointer[state]
        return prev, prev

    _, path = jax.lax.scan(backward, last, pointers, reverse=True)
    path = jnp.concatenate([path, last[None]])
    return jnp.where(valid, path, -1), jnp.max(delta)


def viterbi_with_score(model, params, data, lengths=None, evidence=None):
    """Most likely state paths (B, T) (-1 at padded steps) and their (B,) log
    joint densities log p(x, z*) (plus the (B, T, K) ``evidence`` of z*)."""
    latent = model.latent
    data = _as_batch(model, data)
    valid = _valid_mask(data, lengths)
    data = data if lengths is None else _fill_padding(data, valid)
    log_init, log_trans, log_emit = latent.log_factors(model, params, data)
    if evidence is not None:
        evidence = jnp.asarray(evidence).astype(log_emit.dtype)
        log_emit = log_emit + jnp.where(valid[..., None], evidence, 0.0)
    return jax.vmap(lambda e, m: _viterbi_one(log_init, log_trans, e, m))(
        log_emit, valid
    )


_viterbi_jit = jax.jit(viterbi_with_score, static_argnames="model")


def padded_viterbi(model, params, data, lengths=None, evidence=None):
    """``viterbi_with_score``, compiled once per size bucket (see ``_buckets``).

    Concrete (B, T, ...) data are padded to bucket sizes (length-0 sequences,
    steps past every length); the paths (B, T) and scores (B,) of the real
    sequences are returned.
    """
    data = _as_batch(model, data)
    if not _buckets.can_pad(data, lengths):
        return _viterbi_jit(model, params, data, lengths, evidence)
    b, t = jax.tree.leaves(data)[0].shape[:2]
    padded, padded_lengths, _ = _buckets.pad_sequences(data, lengths)
    if evidence is not None:
        bp, tp = jax.tree.leaves(padded)[0].shape[:2]
        evidence = jnp.pad(jnp.asarray(evidence), ((0, bp - b), (0, tp - t), (0, 0)))
    paths, scores = _viterbi_jit(model, params, padded, padded_lengths, evidence)
    return (
        _buckets.take(paths, (slice(b), slice(t))),
        _buckets.take(scores, (slice(b),)),
    )


def viterbi(
    model, params: Any, data: Any, *, lengths=None, latent_evidence=None
) -> jax.Array:
    """Most likely state paths of a ``MarkovChain`` model (max-product).

    Args:
        model: a ``LatentModel`` whose latent is a ``MarkovChain``.
        params: the parameters.
        data: (B, T, ...) padded sequences (or a pytree of such arrays).
        lengths: optional (B,) valid lengths (None: all T).
        latent_evidence: optional (B, T, K) log-evidence on the states (as in
            ``jaxem.fit``): -inf clamps a state out at a step.

    Returns:
        (B, T) int paths; padded steps hold -1.

    Raises:
        ValueError: if the model is not a chain model, or for bad data or
            lengths (when called with concrete arrays).

    Examples:
        >>> import jax.numpy as jnp, jaxem
        >>> model = jaxem.models.categorical_hmm(2, 2)
        >>> params = {"startprob": jnp.array([0.9, 0.1]),
        ...           "transmat": jnp.array([[0.8, 0.2], [0.2, 0.8]]),
        ...           "emissionprob": jnp.array([[0.9, 0.1], [0.1, 0.9]])}
        >>> jaxem.viterbi(model, params, jnp.array([[0, 0, 1, 1, 1]])).tolist()
        [[0, 0, 1, 1, 1]]
    """
    if not isinstance(getattr(model, "latent", None), MarkovChain):
        raise ValueError(
            f"model: viterbi needs a LatentModel with a MarkovChain latent, got "
            f"{model!r}"
        )
    from .._model_checks import check_model  # (jaxem._latent is imported first)

    data = _as_batch(model, jax.tree.map(jnp.asarray, data))
    if _validation.is_concrete(data, lengths):
        model.latent.validate(model, data, None, lengths)
    if _validation.is_concrete(params):
        _validation.check_params_finite("params", params)
    from .._evidence import check as check_evidence

    evidence = check_evidence(model, latent_evidence, data)
    check_model(model, params, data, None, lengths)
    _compile_cache.enable()
    return padded_viterbi(model, params, data, lengths, evidence)[0]
