"""Static checks of terraform/: every file parses, module interfaces are complete and used
correctly by the examples, and the modules hold the properties the deployment issue asks for."""

from __future__ import annotations

import pathlib
import re

import hcl2
import pytest

from conftest import (
    EXAMPLES,
    MODULES,
    TERRAFORM,
    blocks,
    first,
    parse,
    resources,
    tf_dirs,
    tf_files,
    unq,
    variables,
)

META_ARGUMENTS = {"source", "version", "providers", "count", "for_each", "depends_on"}
REQUIRED_MODULES = ["spoke", "provider_pool", "hub", "network"]


def rel(p: pathlib.Path) -> str:
    return str(p.relative_to(TERRAFORM))


# ---------------------------------------------------------------------------------------------
# Parsing and interfaces


def test_the_required_modules_and_example_exist():
    for name in REQUIRED_MODULES:
        assert (MODULES / name / "variables.tf").is_file(), name
        assert (MODULES / name / "main.tf").is_file(), name
        assert (MODULES / name / "outputs.tf").is_file(), name
    assert (EXAMPLES / "multi-account" / "main.tf").is_file()


@pytest.mark.parametrize("path", tf_files(), ids=rel)
def test_tf_file_parses(path):
    doc = parse(path)
    assert isinstance(doc, dict)


@pytest.mark.parametrize("directory", tf_dirs(), ids=rel)
def test_every_variable_has_description_and_type(directory):
    problems = []
    for path, name, body in blocks(directory, "variable"):
        if not unq(body.get("description", "")).strip():
            problems.append(f"{path.name}: variable {name} has no description")
        if "type" not in body:
            problems.append(f"{path.name}: variable {name} has no type")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("directory", tf_dirs(), ids=rel)
def test_every_output_has_a_description(directory):
    missing = [name for _, name, body in blocks(directory, "output") if not unq(body.get("description", "")).strip()]
    assert not missing, f"outputs without description: {missing}"


def module_calls():
    """(calling file, module name, body, module directory) for every local module call."""
    calls = []
    for path in tf_files():
        for entry in parse(path).get("module", []):
            for label, body in entry.items():
                source = unq(body["source"])
                if source.startswith("./") or source.startswith("../"):
                    calls.append((path, unq(label), body, (path.parent / source).resolve()))
    return calls


def test_examples_call_the_modules():
    called = {d.name for p, _, _, d in module_calls() if EXAMPLES in p.parents}
    for name in REQUIRED_MODULES:
        assert name in called, f"examples never call modules/{name}"


@pytest.mark.parametrize("call", module_calls(), ids=lambda c: f"{rel(c[0])}:{c[1]}")
def test_module_call_inputs_exist_and_required_inputs_are_passed(call):
    path, name, body, directory = call
    assert directory.is_dir(), f"module {name}: source {directory} does not exist"
    declared = variables(directory)
    passed = set(body) - META_ARGUMENTS - {"__is_block__"}
    unknown = sorted(passed - set(declared))
    required = sorted(v for v, b in declared.items() if "default" not in b)
    missing = sorted(set(required) - passed)
    assert not unknown, f"module {name} ({rel(path)}) passes inputs that {directory.name} does not declare: {unknown}"
    assert not missing, f"module {name} ({rel(path)}) omits required inputs of {directory.name}: {missing}"


@pytest.mark.parametrize("directory", sorted(p for p in MODULES.iterdir() if p.is_dir()), ids=lambda p: p.name)
def test_modules_pin_terraform_and_provider_versions(directory):
    terraform = [b for path in directory.glob("*.tf") for b in parse(path).get("terraform", [])]
    assert terraform, f"{directory.name} has no terraform {{}} block"
    block = terraform[0]
    assert unq(block["required_version"]).startswith(">=")
    providers = first(block["required_providers"])
    assert "aws" in providers
    assert unq(providers["aws"]["source"]) == "hashicorp/aws"
    assert "<" in unq(providers["aws"]["version"]), "pin an upper bound on the AWS provider"


def validation_text(var: dict) -> str:
    return " ".join(str(v.get("condition")) for v in var.get("validation", []))


@pytest.mark.parametrize(
    "directory,name",
    [
        (MODULES / "spoke", "account_id"),
        (MODULES / "hub", "account_id"),
        (EXAMPLES / "multi-account", "hub_account_id"),
        (EXAMPLES / "multi-account", "spoke_a_account_id"),
        (EXAMPLES / "multi-account", "spoke_b_account_id"),
    ],
    ids=lambda x: x if isinstance(x, str) else x.name,
)
def test_account_ids_are_validated_as_12_digits(directory, name):
    assert "[0-9]{12}" in validation_text(variables(directory)[name])


def test_weights_and_ttl_are_validated():
    pool = variables(MODULES / "provider_pool")
    weights = validation_text(pool["members"])
    assert "m.weight >= 0" in weights and "m.weight <= 255" in weights
    ttl = pool["ttl"]
    assert ttl["default"] == 10
    assert "var.ttl >= 1" in validation_text(ttl)
    spoke = variables(MODULES / "spoke")
    assert "var.dns_weight <= 255" in validation_text(spoke["dns_weight"])


def test_cidrs_are_validated():
    for directory, names in [
        (MODULES / "network", ["spoke_cidrs"]),
        (MODULES / "spoke", ["hub_cidrs", "vpc_cidr"]),
        (MODULES / "hub", ["spoke_cidrs", "ingress_cidrs"]),
        (MODULES / "vpc", ["cidr"]),
    ]:
        declared = variables(directory)
        for name in names:
            assert "cidrnetmask" in validation_text(declared[name]), f"{directory.name}.{name}"


def test_checkov_skips_carry_a_reason():
    pattern = re.compile(r"#checkov:skip=(CKV2?_[A-Z0-9]+_\d+)(:(.*))?$")
    problems = []
    for path in tf_files():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "checkov:skip" not in line:
                continue
            m = pattern.search(line.strip())
            if not m or len((m.group(3) or "").strip()) < 20:
                problems.append(f"{rel(path)}:{n}: skip without a real reason: {line.strip()}")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------
# What the issue asks of each module


def test_spoke_nlb_has_static_private_ips_and_healthz_target_checks():
    spoke = MODULES / "spoke"
    lb = resources(spoke, "aws_lb")["this"]
    assert unq(lb["load_balancer_type"]) == "network"
    assert lb["internal"] is True
    text = (spoke / "main.tf").read_text()
    assert re.search(r'dynamic "subnet_mapping"[\s\S]*private_ipv4_address\s*=', text)

    tg = resources(spoke, "aws_lb_target_group")["this"]
    hc = first(tg["health_check"])
    assert unq(hc["protocol"]) == "HTTP"
    assert unq(hc["path"]) == "/healthz"
    assert hc["interval"] == "${var.health_check_interval_seconds}"
    assert variables(spoke)["health_check_interval_seconds"]["default"] == 10
    assert tg["connection_termination"] is False


def test_spoke_task_role_allows_only_invoke_on_configured_models():
    text = (MODULES / "spoke" / "main.tf").read_text()
    assert '"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"' in text
    assert "resources = var.bedrock_model_arns" in text
    assert "resources = var.runtime_secret_arns" in text
    assert "bedrock:*" not in text and '"*"' not in text.split("task_statements")[1].split("aws_iam_role_policy")[0]
    assert "secretsmanager:*" not in text


def test_spoke_autoscales_on_cpu_and_requests():
    policies = resources(MODULES / "spoke", "aws_appautoscaling_policy")
    cpu = first(first(policies["cpu"]["target_tracking_scaling_policy_configuration"])["predefined_metric_specification"])
    assert unq(cpu["predefined_metric_type"]) == "ECSServiceAverageCPUUtilization"
    requests = first(policies["requests"]["target_tracking_scaling_policy_configuration"])
    assert "customized_metric_specification" in requests


def test_spoke_dns_health_uses_a_cloudwatch_alarm_on_healthy_targets():
    spoke = MODULES / "spoke"
    hc = resources(spoke, "aws_route53_health_check")["this"]
    assert unq(hc["type"]) == "CLOUDWATCH_METRIC"
    alarm = resources(spoke, "aws_cloudwatch_metric_alarm")["no_healthy_targets"]
    assert unq(alarm["namespace"]) == "AWS/NetworkELB"
    assert unq(alarm["metric_name"]) == "HealthyHostCount"


def test_spoke_has_log_group_security_groups_and_tgw_attachment():
    spoke = MODULES / "spoke"
    assert resources(spoke, "aws_cloudwatch_log_group")
    assert {"nlb", "tasks"} <= set(resources(spoke, "aws_security_group"))
    assert resources(spoke, "aws_ec2_transit_gateway_vpc_attachment")
    service = resources(spoke, "aws_ecs_service")["this"]
    assert unq(service["launch_type"]) == "FARGATE"


def test_provider_pool_has_weighted_records_with_health_checks_and_ttl():
    records = resources(MODULES / "provider_pool", "aws_route53_record")
    weighted = records["weighted"]
    assert "weighted_routing_policy" in weighted
    assert weighted["health_check_id"] == "${each.value.health_check_id}"
    assert weighted["ttl"] == "${var.ttl}"
    assert unq(records["srv"]["type"]) == "SRV"


def test_hub_uses_alb_https_waf_rate_rule_and_optional_redis():
    hub = MODULES / "hub"
    lb = resources(hub, "aws_lb")["this"]
    assert unq(lb["load_balancer_type"]) == "application"
    listener = resources(hub, "aws_lb_listener")["https"]
    assert listener["port"] == 443 and unq(listener["protocol"]) == "HTTPS"
    text = (hub / "main.tf").read_text()
    assert "rate_based_statement" in text and "aws_wafv2_web_acl_association" in text
    redis = resources(hub, "aws_elasticache_replication_group")["redis"]
    assert "var.redis_enabled" in redis["count"]
    assert redis["transit_encryption_enabled"] is True
    assert "30 seconds" in text, "the ALB-vs-API-Gateway choice must be justified in the module"


def test_network_shares_the_tgw_through_ram():
    network = MODULES / "network"
    assert resources(network, "aws_ec2_transit_gateway")
    assert resources(network, "aws_ram_resource_share")
    assert resources(network, "aws_ram_principal_association")
    assert resources(network, "aws_ec2_transit_gateway_vpc_attachment")


def test_example_has_hub_and_two_spoke_accounts_through_assumed_roles():
    example = EXAMPLES / "multi-account"
    providers = [p for path in example.glob("*.tf") for p in parse(path).get("provider", [])]
    aliases = {}
    for entry in providers:
        for name, body in entry.items():
            assert unq(name) == "aws"
            role = unq(first(body["assume_role"])["role_arn"])
            aliases[unq(body["alias"])] = role
    assert set(aliases) == {"hub", "spoke_a", "spoke_b"}
    assert all(role.startswith("arn:aws:iam::") for role in aliases.values())
    spokes = [c for c in module_calls() if c[0].parent == example and c[3].name == "spoke"]
    assert len(spokes) == 2


def test_readme_shows_how_to_add_a_third_spoke():
    text = (TERRAFORM / "README.md").read_text()
    assert 'module "spoke_c"' in text and 'alias               = "spoke_c"' in text


# ---------------------------------------------------------------------------------------------
# The validation regexes accept what the example produces and reject obvious mistakes. (Python's
# re and Terraform's RE2 agree on the simple patterns used here.)


def validation_regexes(directory, name):
    text = validation_text(variables(directory)[name])
    patterns = re.findall(r'regex\("((?:[^"\\]|\\.)*)"', text)
    assert patterns, f"{directory.name}.{name} has no regex validation"
    # python-hcl2 keeps HCL escapes: \\ -> \, \" -> "
    return [p.replace('\\"', '"').replace("\\\\", "\\") for p in patterns]


REGEX_CASES = [
    (MODULES / "spoke", "bedrock_model_arns",
     ["arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
      "arn:aws:bedrock:*::foundation-model/anthropic.claude-3-5-sonnet-20241022-v2:0",
      "arn:aws:bedrock:us-west-2:222222222222:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0"],
     ["arn:aws:s3:::bucket", "bedrock:*"]),
    (MODULES / "spoke", "name", ["bedrock-a", "openai-eu-1"], ["Bedrock", "a" * 21, "-x"]),
    (MODULES / "spoke", "account_id", ["222222222222"], ["2222", "22222222222a"]),
    (MODULES / "hub", "account_id", ["111111111111"], ["1111111111111"]),
    (MODULES / "provider_pool", "zone_id", ["Z0123456789ABCDEFGHIJ"], ["zone-1"]),
    (MODULES / "network", "share_principals",
     ["222222222222", "arn:aws:organizations::111111111111:organization/o-abc123"], ["alice"]),
    (EXAMPLES / "multi-account", "region", ["us-east-1", "eu-central-1", "us-gov-west-1"], ["useast1"]),
    (EXAMPLES / "multi-account", "image_tag", ["v0.1.0", "3f2c1ab"], ["-bad", "a b"]),
]


@pytest.mark.parametrize("directory,name,good,bad", REGEX_CASES, ids=lambda x: x if isinstance(x, str) else None)
def test_validation_regexes(directory, name, good, bad):
    patterns = validation_regexes(directory, name)
    for value in good:
        assert any(re.search(p, value) for p in patterns), f"{name}: {value!r} should be accepted by {patterns}"
    for value in bad:
        assert not all(re.search(p, value) for p in patterns), f"{name}: {value!r} should be rejected by {patterns}"


def test_spoke_config_validation_accepts_the_rendered_template():
    from test_configs import rendered_spoke

    for pattern in validation_regexes(MODULES / "spoke", "config_toml"):
        assert re.search(pattern, rendered_spoke()), pattern


def local_regex(path, local_name):
    """The first regex("...") pattern in `local_name = ...` of a module's main.tf, HCL-unescaped."""
    text = path.read_text()
    m = re.search(rf"^\s*{local_name}\s*=([\s\S]*?)\n\s*\w+\s*=", text, re.M)
    assert m, local_name
    patterns = re.findall(r'regex\("((?:[^"\\]|\\.)*)"', m.group(1))
    return [p.replace('\\"', '"').replace("\\\\", "\\") for p in patterns]


def test_spoke_preconditions_accept_the_rendered_template_and_reject_mismatches():
    from test_configs import rendered_spoke

    config = rendered_spoke()
    (listen,) = local_regex(MODULES / "spoke" / "main.tf", "listen_ok")
    assert re.search(listen.replace("${var.port}", "50051"), config)
    assert not re.search(listen.replace("${var.port}", "50052"), config)
    drain = local_regex(MODULES / "spoke" / "main.tf", "drain_ok")
    assert re.search(drain[0], config)
    assert re.search(drain[1].replace("${var.drain_timeout_seconds}", "30"), config)
    assert not re.search(drain[1].replace("${var.drain_timeout_seconds}", "45"), config)


def test_spoke_connection_age_matches_the_config_and_the_deregistration_delay_outlasts_it():
    from test_configs import rendered_spoke

    config = rendered_spoke()
    age = local_regex(MODULES / "spoke" / "main.tf", "age_ok")
    assert re.search(age[0], config)
    assert re.search(age[1].replace("${var.max_connection_age_seconds}", "30"), config)
    assert not re.search(age[1].replace("${var.max_connection_age_seconds}", "60"), config)
    # The NLB keeps existing connections through deregistration, and the delay outlasts one
    # connection age (+10 %), so hubs have left a task before ECS stops it.
    tg = resources(MODULES / "spoke", "aws_lb_target_group")["this"]
    assert tg["connection_termination"] is False
    assert tg["deregistration_delay"] == "${var.deregistration_delay_seconds}"
    text = (MODULES / "spoke" / "main.tf").read_text()
    assert "var.deregistration_delay_seconds >= ceil(var.max_connection_age_seconds * 1.1) + 10" in text
    assert "local.deregistration_ok" in text and "local.age_ok" in text
    declared = variables(MODULES / "spoke")
    age_default = declared["max_connection_age_seconds"]["default"]
    assert declared["deregistration_delay_seconds"]["default"] >= -(-age_default * 11 // 10) + 10
    example = (EXAMPLES / "multi-account" / "main.tf").read_text()
    assert example.count("max_connection_age_seconds = local.spoke_max_connection_age_seconds") >= 4


def test_hub_precondition_accepts_the_rendered_template():
    from test_configs import rendered_hub

    (listen,) = local_regex(MODULES / "hub" / "main.tf", "listen_ok")
    assert re.search(listen.replace("${var.container_port}", "8080"), rendered_hub())


def test_tfvars_example_sets_only_declared_variables_and_all_required_ones():
    example = EXAMPLES / "multi-account"
    with (example / "terraform.tfvars.example").open() as f:
        values = {k: v for k, v in hcl2.load(f).items() if not k.startswith("__")}
    declared = variables(example)
    unknown = sorted(set(values) - set(declared))
    required = sorted(name for name, body in declared.items() if "default" not in body)
    assert not unknown, f"terraform.tfvars.example sets undeclared variables: {unknown}"
    assert not set(required) - set(values), f"terraform.tfvars.example omits {sorted(set(required) - set(values))}"
