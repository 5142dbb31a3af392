"""The monitoring configurations of packaging/monitoring against what their agents document, and
against the metrics this agent writes.

- The CloudWatch agent's file validates against the agent's own JSON Schema
  (tests/fixtures/monitoring/amazon-cloudwatch-agent.schema.json, draft-04).
- The Datadog files use only the options integrations-core documents for them:
  `datadog_checks_dev/.../templates/configuration/instances/openmetrics.yaml` (read at commit
  fc98543), its `instances/default` templates (tags, service, global), and the journald
  integration's `assets/configuration/spec.yaml` (commit 1b52d53) with the log options its
  README names (path, source, service, tags, include_matches, exclude_matches, config_id).
- Every metric the agent writes is selected by each configuration: they select by the
  `cockpit_agent_` prefix, so a renamed metric stays in as long as it keeps the prefix.
- docs/monitoring.md shows each file exactly as it is.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft4Validator
from prometheus_client.parser import text_string_to_metric_families

from cockpit_agent.check import CheckReport, prometheus_text
from cockpit_agent.engine import Finding
from cockpit_agent.state import RunRecord, State, StepRecord, now
from tests.helpers.md import md_array

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "packaging" / "monitoring"
CLOUDWATCH = CONFIGS / "cloudwatch" / "amazon-cloudwatch-agent.json"
SCRAPE = CONFIGS / "cloudwatch" / "cockpit-agent-prometheus.yaml"
OPENMETRICS = CONFIGS / "datadog" / "conf.d" / "openmetrics.d" / "conf.yaml"
JOURNALD = CONFIGS / "datadog" / "conf.d" / "journald.d" / "conf.yaml"
SCHEMA = ROOT / "tests" / "fixtures" / "monitoring" / "amazon-cloudwatch-agent.schema.json"

OPENMETRICS_OPTIONS = {
    "openmetrics_endpoint", "namespace", "raw_metric_prefix", "metrics", "extra_metrics",
    "exclude_metrics", "exclude_metrics_by_labels", "exclude_labels", "rename_labels",
    "enable_health_service_check", "hostname_label", "hostname_format",
    "collect_histogram_buckets", "non_cumulative_histogram_buckets",
    "histogram_buckets_as_distributions", "collect_counters_with_distributions",
    "share_labels", "cache_shared_labels", "raw_line_filters", "cache_metric_wildcards",
    "use_latest_spec", "telemetry", "ignore_tags", "tags", "service",
    "min_collection_interval",
}  # fmt: skip
JOURNALD_OPTIONS = {
    "type", "container_mode", "include_units", "exclude_units", "include_user_units",
    "exclude_user_units", "path", "source", "service", "tags", "include_matches",
    "exclude_matches", "config_id",
}  # fmt: skip


def agent_metric_names() -> set[str]:
    """Every metric family the agent's textfile has on a host with an array and a last run."""
    state = State(instance_id="i-1")
    run = RunRecord(run_id="r", started_at=now(), finished_at=now(), agent_version="0")
    run.steps.append(StepRecord(name="storage", status="failed", started_at=now()))
    state.add_run(run)
    array = md_array(uuid="u")
    findings = [Finding("critical", "storage-degraded", "md127 degraded", step="storage")]
    report = CheckReport(findings, arrays=[array], durations={"storage": 0.5})
    text = prometheus_text(report, state, 1_700_000_000.0, 1.0)
    names = {family.name for family in text_string_to_metric_families(text)}
    assert len(names) >= 8, names  # the families of docs/monitoring.md's table
    return names


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_json() -> Any:
    return json.loads(CLOUDWATCH.read_text())


def test_cloudwatch_agent_configuration_follows_its_schema() -> None:
    errors = list(Draft4Validator(json.loads(SCHEMA.read_text())).iter_errors(load_json()))
    assert not errors, [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors]


def test_the_schema_refuses_a_wrong_key() -> None:
    validator = Draft4Validator(json.loads(SCHEMA.read_text()))
    broken = load_json()
    broken["logs"]["logs_collected"]["journald"]["collect_list"][0]["unit"] = ["x.service"]
    assert not validator.is_valid(broken)
    del broken["logs"]["logs_collected"]["journald"]["collect_list"][0]["unit"]
    broken["logs"]["metrics_collected"]["prometheus"]["prometheus_config"] = "/x.yaml"
    assert not validator.is_valid(broken)


def test_cloudwatch_scrapes_the_agents_metrics_from_node_exporter() -> None:
    prometheus = load_json()["logs"]["metrics_collected"]["prometheus"]
    assert prometheus["prometheus_config_path"].endswith("/" + SCRAPE.name)
    [declaration] = prometheus["emf_processor"]["metric_declaration"]
    [job] = load_yaml(SCRAPE)["scrape_configs"]
    assert re.search(declaration["label_matcher"], job["job_name"])
    [target] = job["static_configs"]
    assert target["targets"] == ["127.0.0.1:9100"]
    for dimension in itertools.chain.from_iterable(declaration["dimensions"]):
        assert dimension in target["labels"], "a dimension every metric of the job has"
    [keep] = job["metric_relabel_configs"]
    assert (keep["source_labels"], keep["action"]) == (["__name__"], "keep")
    for name in agent_metric_names():
        assert re.fullmatch(keep["regex"], name), name  # Prometheus anchors relabel regexes
        assert any(re.search(s, name) for s in declaration["metric_selectors"]), name


def test_cloudwatch_reads_the_agents_units_from_the_journal() -> None:
    [entry] = load_json()["logs"]["logs_collected"]["journald"]["collect_list"]
    assert set(entry["units"]) == {"cockpit-agent.service", "cockpit-agent-check.service"}
    assert set(entry["units"]) <= {p.name for p in (ROOT / "systemd").iterdir()}


def test_datadog_openmetrics_uses_documented_options_and_takes_every_metric() -> None:
    config = load_yaml(OPENMETRICS)
    [instance] = config["instances"]
    assert set(instance) <= OPENMETRICS_OPTIONS, set(instance) - OPENMETRICS_OPTIONS
    assert instance["openmetrics_endpoint"] == "http://127.0.0.1:9100/metrics"
    assert re.fullmatch(r"\w+", instance["namespace"])  # the template's pattern, whole
    for name in agent_metric_names():
        assert any(re.search(m, name) for m in instance["metrics"]), name


def test_datadog_journald_uses_documented_options() -> None:
    [source] = load_yaml(JOURNALD)["logs"]
    assert set(source) <= JOURNALD_OPTIONS, set(source) - JOURNALD_OPTIONS
    assert source["type"] == "journald"
    assert set(source["include_units"]) == {"cockpit-agent.service", "cockpit-agent-check.service"}


@pytest.mark.parametrize(
    "path", sorted(p for p in CONFIGS.rglob("*") if p.is_file()), ids=lambda p: p.name
)
def test_the_page_shows_each_file_as_it_is(path: Path) -> None:
    page = (ROOT / "docs" / "monitoring.md").read_text()
    assert str(path.relative_to(ROOT)) in page
    assert path.read_text() in page, f"docs/monitoring.md shows another {path.name}"
