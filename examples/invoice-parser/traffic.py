"""Traffic generator for the invoice parser: simulated users hit the prompt an experiment splits.

Each prompt version behaves as configured (error rate, latency, share of thumbs-up feedback), so an
experiment's analysis can be shown — and tested — on a candidate that is truly worse or better:

    python examples/invoice-parser/traffic.py \\
        --projection /etc/promptalias/prompts/invoice-parser.production.json \\
        --tracking-uri http://127.0.0.1:5000 --experiment invoice-parser-traffic \\
        --version 3:errors=0.01,latency=0.20,thumbs=0.50 \\
        --version 4:errors=0.10,latency=0.35,thumbs=0.50 --users 500 [--metrics-port 9108 --forever]

Every request routes by user through promptalias.client (the projection's experiment block, the
same hash as every app), runs inside an MLflow trace that links the prompt version (MLflow's own
tracing API), counts in `promptalias_client_requests_total{outcome}` and
`promptalias_client_request_duration_seconds` (prometheus_client, served on --metrics-port), and gets
feedback through `mlflow.log_feedback`: `thumbs` (true/false, from a user) and `error` (true/false,
from a code judge). Randomness is seeded per user and version, so a run is reproducible.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptalias.client import Prompt
from promptalias.client._document import validate_document
from promptalias.client._observe import observe, record_in_trace
from promptalias.client._prompt import prompt_from_document


@dataclass(frozen=True)
class Behaviour:
    """How one prompt version behaves."""

    errors: float = 0.0
    """Share of requests that fail."""
    latency: float = 0.2
    """Mean latency in seconds (exponentially distributed)."""
    thumbs: float = 0.5
    """Share of successful requests whose user gives a thumbs-up."""

    @classmethod
    def parse(cls, text: str) -> tuple[int, Behaviour]:
        """`4:errors=0.1,latency=0.3,thumbs=0.6` -> (4, Behaviour(...))."""
        version, _, rest = text.partition(":")
        fields = {
            key.strip(): float(value) for key, _, value in (p.partition("=") for p in rest.split(",") if p)
        }
        return int(version), cls(**fields)


@dataclass
class Tally:
    requests: dict[int, int]
    errors: dict[int, int]
    thumbs_up: dict[int, int]


def serve(
    base: Prompt,
    users: Iterable[str],
    behaviours: Mapping[int, Behaviour],
    *,
    seed: int = 0,
    feedback: bool = True,
) -> Tally:
    """One request per user, traced in MLflow (the active tracking URI and experiment)."""
    import mlflow
    from mlflow.entities import AssessmentSource

    tally = Tally({}, {}, {})
    outcomes: list[tuple[str, int, bool, bool]] = []
    for user in users:
        prompt = base.route(user)
        behaviour = behaviours.get(prompt.version, Behaviour())
        rng = random.Random(f"{seed}:{user}:{prompt.version}")  # noqa: S311 -- simulation, reproducible
        failed = rng.random() < behaviour.errors
        happy = not failed and rng.random() < behaviour.thumbs
        latency = rng.expovariate(1 / behaviour.latency) if behaviour.latency > 0 else 0.0
        with mlflow.start_span(name="parse-invoice") as span:
            record_in_trace(prompt)  # links the prompt version to the trace, as load_prompt does
            span.set_inputs({"user": user})
            span.set_outputs({"error": failed, "version": prompt.version})
            trace_id = span.trace_id
        observe(prompt, latency, "error" if failed else "ok")
        tally.requests[prompt.version] = tally.requests.get(prompt.version, 0) + 1
        tally.errors[prompt.version] = tally.errors.get(prompt.version, 0) + failed
        tally.thumbs_up[prompt.version] = tally.thumbs_up.get(prompt.version, 0) + happy
        outcomes.append((trace_id, prompt.version, failed, happy))
    if feedback:
        mlflow.flush_trace_async_logging()
        for trace_id, _version, failed, happy in outcomes:
            mlflow.log_feedback(
                trace_id=trace_id,
                name="thumbs",
                value=happy,
                source=AssessmentSource(source_type="HUMAN", source_id="traffic-generator"),
            )
            mlflow.log_feedback(
                trace_id=trace_id,
                name="error",
                value=failed,
                source=AssessmentSource(source_type="CODE", source_id="error-judge"),
            )
    return tally


def load_projection(path: Path) -> Prompt:
    document: dict[str, Any] = json.loads(path.read_text())
    validate_document(document)
    return prompt_from_document(document, source="files")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--projection", type=Path, required=True, help="the baseline's projection document")
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument(
        "--experiment", default="invoice-parser-traffic", help="MLflow experiment of the traces"
    )
    parser.add_argument(
        "--version", action="append", default=[], help="VERSION:errors=..,latency=..,thumbs=.."
    )
    parser.add_argument("--users", type=int, default=200, help="users per round")
    parser.add_argument("--metrics-port", type=int, help="serve /metrics on 127.0.0.1:PORT")
    parser.add_argument("--forever", action="store_true", help="a new round of users every --every seconds")
    parser.add_argument("--every", type=float, default=5.0)
    args = parser.parse_args(argv)
    import mlflow

    mlflow.set_tracking_uri(args.tracking_uri)
    mlflow.set_experiment(args.experiment)
    behaviours = dict(Behaviour.parse(text) for text in args.version)
    if args.metrics_port:
        import prometheus_client

        prometheus_client.start_http_server(args.metrics_port, addr="127.0.0.1")
    round_ = 0
    while True:
        base = load_projection(args.projection)  # re-read: the split moves while we run
        users = [f"user-{round_}-{i}" for i in range(args.users)]
        tally = serve(base, users, behaviours, seed=round_)
        print(json.dumps({"round": round_, "requests": tally.requests, "errors": tally.errors}), flush=True)
        round_ += 1
        if not args.forever:
            return 0
        time.sleep(args.every)


if __name__ == "__main__":
    raise SystemExit(main())
