"""Renders floatip's Helm chart with Helm's own Go library and validates what it renders.

Run by floatip-lab (src/chart/) inside a virtualenv holding requirements.txt:
helm-python-sdk binds Helm v4's Go SDK through a shared library shipped in its wheel, so no helm
binary is needed; kubernetes-validate carries the Kubernetes OpenAPI schemas per version.

    python render.py CHART --release NAME --namespace NS [--values FILE] --kube-version 1.31.0 ...

Lints the chart (helm lint --strict), then prints one JSON object on stdout: the chart's CRDs and
rendered documents (each as Helm wrote it and parsed), NOTES.txt, and one validation result per
object and Kubernetes version. Exits 1 with one line on stderr when lint finds a warning, the
values or templates are refused, or any object is invalid.
"""

import argparse
import json
import sys

import helm_python as helm
import kubernetes_validate
import yaml


def documents(source, text):
    """Splits a rendered template into its non-empty YAML documents, each kept as written."""
    out = []
    for chunk in text.split("\n---"):
        body = chunk.strip("\n")
        if body.startswith("---"):
            body = body[3:].lstrip("\n")
        obj = yaml.safe_load(body) if body.strip() else None
        if obj is None:
            continue
        if not isinstance(obj, dict) or "kind" not in obj:
            raise SystemExit(f"{source}: a rendered document is not a Kubernetes object: {body[:200]!r}")
        out.append({"source": source, "text": body.rstrip() + "\n", "object": obj})
    return out


def validate(obj, versions):
    """One result per version: valid, or no-schema for kinds outside Kubernetes (CRD kinds)."""
    results = []
    for version in versions:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
            result = "valid"
        except kubernetes_validate.SchemaNotFoundError:
            result = "no-schema"
        except kubernetes_validate.ValidationError as err:
            path = "/".join(str(p) for p in err.caught.path) or "(top)"
            name = obj.get("metadata", {}).get("name")
            raise SystemExit(f"{obj['kind']} {name} is invalid for Kubernetes {version} at {path}: {err.caught.message}")
        results.append({"kind": obj["kind"], "name": obj["metadata"]["name"], "version": version, "result": result})
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("chart")
    parser.add_argument("--release", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--values")
    parser.add_argument("--set-json", action="append", default=[], help="KEY=JSON, dotted key")
    parser.add_argument("--kube-version", action="append", default=[])
    args = parser.parse_args()

    values = {}
    if args.values:
        with open(args.values, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
    for item in args.set_json:
        key, _, raw = item.partition("=")
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = json.loads(raw)

    try:
        # helm lint --strict: warnings (severity 2) and errors fail; info notes do not.
        report = helm.lint(args.chart, values, strict=True, namespace=args.namespace)
        findings = [m for m in report["messages"] if m["severity"] >= 2] + [{"error": e} for e in report["errors"]]
        if findings:
            raise SystemExit("helm lint: " + "; ".join(f"{m.get('path', '')}: {m['error']}" for m in findings))
        with helm.Chart.load(args.chart) as chart:
            chart.validate_schema(values)
            rendered = chart.render(values, name=args.release, namespace=args.namespace, is_install=True)
            crd_files = chart.crds
    except helm.HelmError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise SystemExit("helm refused the chart: " + " ".join(lines))

    notes = ""
    docs = []
    for source in sorted(rendered):
        if source.endswith("NOTES.txt"):
            notes = rendered[source]
        elif not source.split("/")[-1].startswith("_"):
            docs.extend(documents(source, rendered[source]))
    crds = []
    for crd in crd_files:
        crds.extend(documents(crd["filename"], crd["data"]))

    results = []
    for doc in crds + docs:
        results.extend(validate(doc["object"], args.kube_version))
    json.dump(
        {
            "helm": helm.helm_sdk_version(),
            "crds": crds,
            "documents": docs,
            "notes": notes,
            "validation": results,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
