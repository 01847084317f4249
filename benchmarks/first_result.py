"""Time to the first result: jaxem vs scikit-learn and hmmlearn, fresh processes.

Every measurement runs in a NEW Python process, as a user's script would:

- cold: the persistent compilation cache is empty (a new ``XDG_CACHE_HOME``);
- warm: a second process with the cache the cold one left behind.

Rows: first ``GaussianMixture(3).fit(iris)`` after import, a refit on 120
rows, the same-shape refit, a new ``max_iter``; first ``GaussianHMM(3).fit`` on
1000 points, then 800 points and ``lengths=[400, 600]``; the whole
``jaxem fit gmm iris.csv -k 3`` command against an equivalent scikit-learn
script; eager ``jaxem.m_step`` (first and second call). Also lists every
program the first GMM and HMM fits compile, with its compile time.

Usage::

    python benchmarks/first_result.py                 # this checkout
    python benchmarks/first_result.py --jaxem /path/to/other/checkout --json out
    python benchmarks/first_result.py --show out      # the tables of a saved run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

LISTENER = """
import time, jax
_programs = []
def _listen(event, secs, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
        _programs.append([kw.get("fun_name", "?"), secs])
jax.monitoring.register_event_duration_secs_listener(_listen)
def _take():
    out = list(_programs); _programs.clear(); return out
"""

JAXEM_GMM = (
    LISTENER
    + """
import numpy as np, jaxem
from sklearn.datasets import load_iris
X = load_iris().data
def timed(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t
r = {}
r["first"] = timed(lambda: jaxem.GaussianMixture(3, random_state=0).fit(X))
r["programs"] = _take()
r["rows120"] = timed(lambda: jaxem.GaussianMixture(3, random_state=0).fit(X[:120]))
r["programs120"] = _take()
r["same"] = timed(lambda: jaxem.GaussianMixture(3, random_state=0).fit(X))
r["max_iter"] = timed(
    lambda: jaxem.GaussianMixture(3, random_state=0, max_iter=57).fit(X))
r["programs_max_iter"] = _take()
print(json.dumps(r))
"""
)

SKLEARN_GMM = """
import time
from sklearn.mixture import GaussianMixture
from sklearn.datasets import load_iris
X = load_iris().data
def timed(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t
r = {"first": timed(lambda: GaussianMixture(3, random_state=0).fit(X))}
r["rows120"] = timed(lambda: GaussianMixture(3, random_state=0).fit(X[:120]))
r["same"] = timed(lambda: GaussianMixture(3, random_state=0).fit(X))
print(json.dumps(r))
"""

HMM_DATA = """
import numpy as np
rng = np.random.default_rng(0)
states = np.repeat(rng.integers(0, 3, 50), 20)
X = rng.normal(np.array([-3.0, 0.0, 3.0])[states], 1.0)[:, None]
X = np.hstack([X, rng.normal(size=(1000, 1))])
"""

JAXEM_HMM = (
    LISTENER
    + HMM_DATA
    + """
import jaxem
def timed(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t
r = {"first": timed(lambda: jaxem.GaussianHMM(3, random_state=0).fit(X))}
r["programs"] = _take()
r["rows800"] = timed(lambda: jaxem.GaussianHMM(3, random_state=0).fit(X[:800]))
r["programs800"] = _take()
r["lengths"] = timed(
    lambda: jaxem.GaussianHMM(3, random_state=0).fit(X, lengths=[400, 600]))
r["programs_lengths"] = _take()
r["same"] = timed(lambda: jaxem.GaussianHMM(3, random_state=0).fit(X))
print(json.dumps(r))
"""
)

HMMLEARN_HMM = (
    HMM_DATA
    + """
import time
from hmmlearn.hmm import GaussianHMM
def timed(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t
r = {"first": timed(lambda: GaussianHMM(3, random_state=0).fit(X))}
r["rows800"] = timed(lambda: GaussianHMM(3, random_state=0).fit(X[:800]))
r["lengths"] = timed(lambda: GaussianHMM(3, random_state=0).fit(X, lengths=[400, 600]))
r["same"] = timed(lambda: GaussianHMM(3, random_state=0).fit(X))
print(json.dumps(r))
"""
)

JAXEM_MSTEP = (
    LISTENER
    + """
import jax.numpy as jnp, jax.scipy.stats as st, numpy as np, jaxem
def log_joint(params, x, z):
    return jnp.log(params["w"][z]) + st.poisson.logpmf(x, params["rate"][z])
model = jaxem.LatentModel(log_joint, jaxem.Categorical(2), constraints={
    "w": jaxem.constraints.simplex, "rate": jaxem.constraints.positive})
x = np.random.default_rng(0).poisson(np.repeat([2.0, 9.0], 200)).astype(float)
params = {"w": np.array([0.5, 0.5]), "rate": np.array([1.0, 5.0])}
post = jaxem.posterior(model, params, x)
def timed(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t
r = {"first": timed(lambda: np.asarray(jaxem.m_step(model, params, x, post)["rate"]))}
r["second"] = timed(lambda: np.asarray(jaxem.m_step(model, params, x, post)["rate"]))
r["fit"] = timed(lambda: jaxem.fit(model, params, x, max_iter=20))
print(json.dumps(r))
"""
)

SKLEARN_SCRIPT = """
import sys, numpy as np
from sklearn.mixture import GaussianMixture
X = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1)
gm = GaussianMixture(3, random_state=0).fit(X)
print(gm.weights_, gm.means_, gm.covariances_)
"""


def child(code: str, env: dict) -> dict:
    """Run ``code`` in a fresh interpreter; its last stdout line is JSON."""
    script = "import json\n" + textwrap.dedent(code)
    # Run outside any checkout, so ``--jaxem`` (PYTHONPATH) picks the package.
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def wall(command: list[str], env: dict) -> float:
    t = time.perf_counter()
    subprocess.run(
        command, env=env, check=True, capture_output=True, cwd=tempfile.gettempdir()
    )
    return time.perf_counter() - t


def environment(cache_home: str, jaxem_path: str | None) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE"))
        and k != "JAXEM_NO_CACHE"
    }
    env["XDG_CACHE_HOME"] = cache_home
    if jaxem_path:
        env["PYTHONPATH"] = jaxem_path
    return env


def measure(jaxem_path: str | None) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        iris = Path(tmp) / "iris.csv"
        from sklearn.datasets import load_iris

        data = load_iris()
        header = ",".join(name.replace(" (cm)", "") for name in data.feature_names)
        with open(iris, "w") as f:
            f.write(header.replace(" ", "_") + "\n")
            for row in data.data:
                f.write(",".join(str(v) for v in row) + "\n")
        for name, code in [
            ("gmm", JAXEM_GMM),
            ("hmm", JAXEM_HMM),
            ("m_step", JAXEM_MSTEP),
        ]:
            home = tempfile.mkdtemp(dir=tmp)
            results[name + "_cold"] = child(code, environment(home, jaxem_path))
            results[name + "_warm"] = child(code, environment(home, jaxem_path))
        base = environment(tempfile.mkdtemp(dir=tmp), None)
        results["sklearn"] = child(SKLEARN_GMM, base)
        results["hmmlearn"] = child(HMMLEARN_HMM, base)
        home = tempfile.mkdtemp(dir=tmp)
        command = [sys.executable, "-m", "jaxem", "fit", "gmm", str(iris), "-k", "3"]
        env = environment(home, jaxem_path)
        results["cli_cold"] = wall(command + ["--no-progress"], env)
        results["cli_warm"] = wall(command + ["--no-progress"], env)
        script = Path(tmp) / "sk.py"
        script.write_text(SKLEARN_SCRIPT)
        results["cli_sklearn"] = wall([sys.executable, str(script), str(iris)], base)
    return results


def table(r: dict) -> str:
    g, gw, s = r["gmm_cold"], r["gmm_warm"], r["sklearn"]
    h, hw, hl = r["hmm_cold"], r["hmm_warm"], r["hmmlearn"]
    m, mw = r["m_step_cold"], r["m_step_warm"]
    rows = [
        (
            "GaussianMixture(3).fit(iris), first call",
            g["first"],
            gw["first"],
            s["first"],
        ),
        ("then 120 rows instead of 150", g["rows120"], gw["rows120"], s["rows120"]),
        ("then the same 150 rows again", g["same"], gw["same"], s["same"]),
        ("then max_iter=57", g["max_iter"], gw["max_iter"], None),
        (
            "GaussianHMM(3).fit(1000 points), first call",
            h["first"],
            hw["first"],
            hl["first"],
        ),
        ("then 800 points", h["rows800"], hw["rows800"], hl["rows800"]),
        ("then lengths=[400, 600]", h["lengths"], hw["lengths"], hl["lengths"]),
        ("then the same 1000 points again", h["same"], hw["same"], hl["same"]),
        (
            "`jaxem fit gmm iris.csv -k 3` (whole command)",
            r["cli_cold"],
            r["cli_warm"],
            r["cli_sklearn"],
        ),
        ("eager jaxem.m_step, first call", m["first"], mw["first"], None),
        ("eager jaxem.m_step, second call", m["second"], mw["second"], None),
    ]
    lines = [
        "| step | jaxem cold | jaxem warm | peer | cold/peer | warm/peer |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, cold, warm, peer in rows:
        ratio = ("%.0fx" % (cold / peer), "%.1fx" % (warm / peer)) if peer else ("", "")
        peer_s = f"{peer:.3f} s" if peer else ""
        lines.append(
            f"| {label} | {cold:.2f} s | {warm:.2f} s | {peer_s} | {ratio[0]} | "
            f"{ratio[1]} |"
        )
    lines.append("")
    lines.append(
        "A new size's refit / the same-shape refit (target <= 3x), cold process: "
        f"GMM 120 rows {g['rows120'] / g['same']:.1f}x, "
        f"HMM 800 points {h['rows800'] / h['same']:.1f}x, "
        f"HMM lengths=[400, 600] {h['lengths'] / h['same']:.1f}x"
    )
    return "\n".join(lines)


def programs(r: dict) -> str:
    lines = []
    for key, title in [
        ("gmm_cold", "GaussianMixture(3).fit(iris)"),
        ("hmm_cold", "GaussianHMM(3).fit(1000 points)"),
    ]:
        progs = sorted(r[key]["programs"], key=lambda p: -p[1])
        total = sum(p[1] for p in progs)
        lines.append(
            f"\n{title}: {len(progs)} programs, {total:.2f} s of XLA compilation (cold)"
        )
        lines.extend(f"  {secs:7.3f} s  {name}" for name, secs in progs)
        for extra in (
            "programs120",
            "programs800",
            "programs_lengths",
            "programs_max_iter",
        ):
            if extra in r[key]:
                names = [p[0] for p in r[key][extra]]
                what = extra[len("programs") :].lstrip("_")
                lines.append(f"  compiled for {what}: {names or 'nothing'}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jaxem", help="a jaxem checkout to measure (PYTHONPATH)")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--show", help="print the tables of a --json file, no runs")
    args = parser.parse_args(argv)
    r = json.loads(Path(args.show).read_text()) if args.show else measure(args.jaxem)
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    print(table(r))
    print(programs(r))


if __name__ == "__main__":
    main()
