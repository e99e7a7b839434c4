"""Checks compose.yaml without a container engine (CI has none): it parses, every dependency
names a service, the replicas probe `checkout health`, and no secret is written in the file:
the platform token, secrets key and database password come only from ${VAR:?message}."""
import re
import sys

import yaml

SECRETS = ("CHECKOUT_PLATFORM_TOKEN", "CHECKOUT_SECRETS_KEY", "POSTGRES_PASSWORD")
REQUIRED = re.compile(r"\$\{(\w+):\?[^}]+\}")


def problems(doc):
    services = doc.get("services") or {}
    for name in ("postgres", "checkout-1", "checkout-2"):
        if name not in services:
            yield f"no service {name!r}"
    for name, svc in services.items():
        if not (svc.get("image") or svc.get("build")):
            yield f"{name}: neither image nor build"
        for dep in svc.get("depends_on") or {}:
            if dep not in services:
                yield f"{name}: depends on unknown service {dep!r}"
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        for key, value in env.items():
            text = str(value)
            for secret in SECRETS:
                if key == secret or (key == "DATABASE_URL" and secret == "POSTGRES_PASSWORD"):
                    if secret not in REQUIRED.findall(text):
                        yield f"{name}: {key} must come from ${{{secret}:?…}}, not the file"
    for name in ("checkout-1", "checkout-2"):
        test = ((services.get(name) or {}).get("healthcheck") or {}).get("test") or []
        if test[1:3] != ["checkout", "health"]:
            yield f"{name}: healthcheck is not `checkout health`: {test}"
    if "healthcheck" not in (services.get("postgres") or {}):
        yield "postgres: no healthcheck (the replicas wait for service_healthy)"


def main(path):
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    found = list(problems(doc))
    for p in found:
        print(f"{path}: {p}", file=sys.stderr)
    if not found:
        print(f"{path}: ok ({len(doc['services'])} services)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "compose.yaml"))
