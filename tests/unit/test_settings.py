import pytest

from chalicelib.settings import DEV_JWT_SECRET_MARKER, Settings, SettingsError


def test_from_env_reads_every_setting():
    settings = Settings.from_env(
        {
            "STAGE": "prod",
            "AWS_REGION": "eu-west-1",
            "CONNECTIONS_TABLE": "c",
            "TURNS_TABLE": "t",
            "TURN_QUEUE_URL": "https://sqs/q",
            "AGENT_ID": "A",
            "AGENT_ALIAS_ID": "B",
            "AGENT_MEMORY": "true",
            "JWT_JWKS_URL": "https://issuer/.well-known/jwks.json",
            "JWT_ISSUER": "https://issuer",
            "JWT_AUDIENCE": "one, two",
            "MANAGEMENT_ENDPOINT_URL": "http://127.0.0.1:1/local",
            "FLUSH_INTERVAL_MS": "80",
            "LOG_CONTENT": "1",
        }
    )
    assert settings.region == "eu-west-1"
    assert settings.agent_memory is True
    assert settings.jwt_audience == ("one", "two")
    assert settings.flush_interval_ms == 80
    assert settings.log_content is True
    assert settings.connections_table == "c"


def test_defaults():
    settings = Settings.from_env({})
    assert settings.backend == "agent"
    assert settings.agent_memory is False
    assert settings.max_frame_bytes == 32 * 1024


def test_a_deployed_stage_refuses_the_local_dev_secret():
    with pytest.raises(SettingsError, match="development JWT secret"):
        Settings.from_env({"STAGE": "prod", "JWT_SECRET": DEV_JWT_SECRET_MARKER + "abc"})
    Settings.from_env({"STAGE": "local", "JWT_SECRET": DEV_JWT_SECRET_MARKER + "abc"})


def test_jwks_without_issuer_is_refused():
    with pytest.raises(SettingsError, match="JWT_ISSUER"):
        Settings.from_env({"JWT_JWKS_URL": "https://issuer/jwks"})


def test_the_secret_is_not_in_repr():
    assert "s3cr3t" not in repr(Settings(jwt_secret="s3cr3t"))


def test_token_budgets_default_to_no_limit_and_are_never_negative():
    assert (Settings.from_env({}).user_daily_token_budget, Settings.from_env({}).user_monthly_token_budget) == (0, 0)
    settings = Settings.from_env({"USER_DAILY_TOKEN_BUDGET": "100000", "USER_MONTHLY_TOKEN_BUDGET": "2000000"})
    assert (settings.user_daily_token_budget, settings.user_monthly_token_budget) == (100_000, 2_000_000)
    with pytest.raises(SettingsError, match="USER_DAILY_TOKEN_BUDGET"):
        Settings.from_env({"USER_MONTHLY_TOKEN_BUDGET": "-1"})


def test_the_system_prompt_is_given_itself_or_as_the_ssm_parameter_holding_it_not_both():
    assert Settings.from_env({"SYSTEM_PROMPT": "Be brief."}).system_prompt == "Be brief."  # the local stack
    on_aws = Settings.from_env({"SYSTEM_PROMPT_PARAMETER": "/agentstream/prod/system-prompt"})
    assert (on_aws.system_prompt, on_aws.system_prompt_parameter, on_aws.system_prompt_max_age_s) == (
        "", "/agentstream/prod/system-prompt", 300)
    with pytest.raises(SettingsError, match="not both"):
        Settings.from_env({"SYSTEM_PROMPT": "Be brief.", "SYSTEM_PROMPT_PARAMETER": "/agentstream/prod/system-prompt"})


def test_cognito_token_checks_are_read_and_validated():
    settings = Settings.from_env({"JWT_TOKEN_USE": "access", "JWT_CLIENT_ID": "one, two", "JWT_REQUIRED_GROUP": "chat"})
    assert (settings.jwt_token_use, settings.jwt_client_id, settings.jwt_required_group) == ("access", ("one", "two"), "chat")
    assert Settings.from_env({}).jwt_token_use == "" and Settings.from_env({}).jwt_client_id == ()
    with pytest.raises(SettingsError, match="JWT_TOKEN_USE must be"):
        Settings.from_env({"JWT_TOKEN_USE": "refresh"})
    # Access tokens carry no aud: an audience to check would refuse every one of them.
    with pytest.raises(SettingsError, match="JWT_CLIENT_ID and leave JWT_AUDIENCE empty"):
        Settings.from_env({"JWT_TOKEN_USE": "access", "JWT_AUDIENCE": "client"})
    Settings.from_env({"JWT_TOKEN_USE": "id", "JWT_AUDIENCE": "client"})
