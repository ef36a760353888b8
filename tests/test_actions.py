"""The fault vocabulary (deploy/actions.py) and up's options: a bad request is refused, naming what is wrong, before
anything runs."""

import pytest

from deploy.cluster import ACTIONS, DeployError, act


@pytest.mark.parametrize("name, target, fields, says", [
    ("explode", "app1", {}, "no action 'explode'"),
    ("kill", None, {}, "kill needs a target"),
    ("heal", "app1", {}, "heal takes no target"),
    ("kill", "app1", {"count": 2}, "kill takes no field 'count'"),
    ("scale", None, {}, "scale needs 'count'"),
    ("scale", None, {"count": "3"}, "scale's 'count' must be int"),
    ("scale", None, {"count": True}, "scale's 'count' must be int"),
    ("partition", "app1", {"from": "redis1"}, "partition's 'from' must be a list of names"),
    ("promote", None, {"force": 1}, "promote's 'force' must be bool"),
    ("kill", 5, {}, "kill's target must be a name"),
    ("kill", ["app1"], {}, "kill's target must be a name"),
    ("partition", ["app1", 2], {}, "partition's target must be a name or a list of names"),
    ("partition", "app1", {"from": ["redis1", None]}, "partition's 'from' must be a list of names"),
    ("kill", "pg1", {"process": 1}, "kill's 'process' must be str"),
    ("powerloss", None, {}, "powerloss needs a target"),
])
def test_a_request_the_table_does_not_allow_is_refused_naming_the_problem(tmp_path, name, target, fields, says):
    with pytest.raises(DeployError, match=says):
        act(name, target, fields, state_dir=tmp_path)


def test_a_fitting_request_reaches_the_cluster_check(tmp_path):
    with pytest.raises(DeployError, match="no cluster is up"):
        act("kill", "app1", state_dir=tmp_path)


def test_the_command_line_offers_every_action_but_term_under_its_own_name():
    from deploy.__main__ import main
    for name in set(ACTIONS) - {"term"}:
        with pytest.raises(SystemExit) as done:
            main([name, "--help"])
        assert done.value.code == 0


@pytest.mark.parametrize("pair, says", [
    ("PASSWORD_ITERATIONS", "NAME=VALUE"),
    ("lower=1", "NAME=VALUE"),
    ("LD_PRELOAD=/tmp/x.so", "not how the instance's process starts"),
    ("PYTHONSTARTUP=/tmp/x.py", "not how the instance's process starts"),
    ("PATH=/tmp", "not how the instance's process starts"),
])
def test_up_takes_site_settings_only_in_its_environment(pair, says):
    from deploy.cluster import up_keywords, up_options

    with pytest.raises(DeployError, match=says):
        up_keywords(up_options({"env": [pair]}))
    assert up_keywords(up_options({"env": ["PASSWORD_ITERATIONS=1000"]}))["env"] == {"PASSWORD_ITERATIONS": "1000"}
