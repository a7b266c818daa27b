"""A token from a deployed stage's Amazon Cognito user pool: ``make token STAGE=dev user=NAME``.

``python -m infra.signin --stage dev bob`` reads the pool and its app client from the stage's stack
outputs (``UserPoolId``, ``UserPoolClientId``; the stack ``make deploy`` creates,
``agentstream-<stage>-data``, or the CloudFormation path's ``agentstream-<stage>``, or
``--stack-name``), creates the user if needed with the admin API (no invitation message), signs in
with ``ADMIN_USER_PASSWORD_AUTH`` (the one password flow the stack's app client allows) and prints the
access token as the last line of stdout, for wscat and the CLI.

Passwords: a new user gets a generated one, shown once on stderr (the web page's sign-in needs it).
An existing user signs in with ``--password`` (or ``TOKEN_PASSWORD``), the user's own, and nothing
changes; without it the call is refused, unless ``--reset-password`` (``RESET_PASSWORD=1``) says to
replace the user's password with a new generated one, shown once the same way: resetting a real
person's password is never a side effect.

The sign-in itself (``sign_in``) is shared with the local stack's moto pool (devserver/cognito.py).
The calls are made with the operator's credentials: docs/deploy.md lists the permissions they need.
"""
from __future__ import annotations

import argparse
import os
import secrets
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

from botocore.exceptions import ClientError

from infra import stack

PASSWORD_ENV = "TOKEN_PASSWORD"
RESET_ENV = "RESET_PASSWORD"


class SignInError(Exception):
    """Why no token could be had; the message says what to do and never holds a secret."""


def generated_password() -> str:
    """A fresh random password meeting the stack's policy (12+ characters: upper, lower, digit, symbol)."""
    return secrets.token_urlsafe(24) + "aA1!"


@dataclass(frozen=True)
class SignedIn:
    """Cognito's ``AuthenticationResult``, whether the user was created, and the password this call
    set (to show once; ``None`` when the caller's own password was used)."""

    tokens: Dict[str, Any]
    created: bool
    new_password: Optional[str]


def sign_in(cognito: Any, user_pool_id: str, client_id: str, user: str, password: Optional[str] = None,
            group: str = "", reset: bool = False) -> SignedIn:
    """Create ``user`` if needed and sign in with ``ADMIN_USER_PASSWORD_AUTH``.

    A new user gets ``password``, or a fresh generated one (set permanent, so no change is asked
    for). An existing user signs in with ``password``, unchanged; without it, only ``reset`` lets a
    new generated one replace theirs (else SignInError). ``group`` (the stack's required group) is
    joined, as the API refuses tokens without it.
    """
    try:
        cognito.admin_create_user(UserPoolId=user_pool_id, Username=user, MessageAction="SUPPRESS",
                                  TemporaryPassword=generated_password())
        created = True
    except cognito.exceptions.UsernameExistsException:
        created = False
    if not created and password is None and not reset:
        raise SignInError(f"{user} already exists: give {PASSWORD_ENV}=... (the user's password), or "
                          f"{RESET_ENV}=1 to replace it with a new one")
    new_password = generated_password() if password is None else None
    if new_password or created:
        cognito.admin_set_user_password(UserPoolId=user_pool_id, Username=user, Password=new_password or password,
                                        Permanent=True)
    if group:
        cognito.admin_add_user_to_group(UserPoolId=user_pool_id, Username=user, GroupName=group)
    try:
        answer = cognito.admin_initiate_auth(UserPoolId=user_pool_id, ClientId=client_id,
                                             AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                                             AuthParameters={"USERNAME": user, "PASSWORD": new_password or password})
    except cognito.exceptions.NotAuthorizedException:
        raise SignInError(f"{user}: Cognito refused the password given; omit it to have a new one set") from None
    if "AuthenticationResult" not in answer:  # e.g. NEW_PASSWORD_REQUIRED for a temporary password
        raise SignInError(f"{user}: Cognito asks for {answer.get('ChallengeName')!r} before it issues a token; "
                          "omit the password to have a new permanent one set")
    return SignedIn(dict(answer["AuthenticationResult"]), created, new_password)


@dataclass(frozen=True)
class StagePool:
    """A deployed stage's user pool, as its stack's outputs and parameters name it."""

    stack_name: str
    user_pool_id: str
    client_id: str
    required_group: str


def candidate_stacks(stage: str) -> List[str]:
    """Where a stage's pool may be: ``make deploy``'s stack, then the CloudFormation path's default name."""
    return [stack.data_stack_name(stage), f"{stack.APP_NAME}-{stage}"]


def _describe(cloudformation: Any, name: str) -> Optional[Dict[str, Any]]:
    try:
        (described,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return dict(described)


def stage_pool(cloudformation: Any, stage: str, stack_name: Optional[str] = None) -> StagePool:
    """The pool of ``stage``'s stack (``stack_name``, else whichever of ``candidate_stacks`` exists).

    SignInError when there is no such stack, when both paths have one (say which), or when the stack
    made no pool (CreateUserPool=false: its tokens come from the issuer it was given).
    """
    names = [stack_name] if stack_name else candidate_stacks(stage)
    found = {name: described for name in names if (described := _describe(cloudformation, name)) is not None}
    region = cloudformation.meta.region_name
    if not found:
        raise SignInError(f"stage {stage!r}: no stack {' or '.join(names)} in {region} (deployed elsewhere? "
                          "set AWS_REGION; the CloudFormation path under another name? give STACK_NAME=...)")
    if len(found) > 1:
        raise SignInError(f"stage {stage!r}: both {' and '.join(found)} exist in {region}; give STACK_NAME=... "
                          "to say which stack's user pool to use")
    ((name, described),) = found.items()
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in described.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in described.get("Parameters", [])}
    if parameters.get("CreateUserPool") == "false":
        raise SignInError(f"stage {stage!r} (stack {name}) has no Cognito user pool (CreateUserPool=false): it "
                          "accepts the tokens of the issuer it was deployed with; get a token from that issuer")
    if not outputs.get("UserPoolId") or not outputs.get("UserPoolClientId"):  # failed, in progress, or from before the pool
        raise SignInError(f"stage {stage!r}: stack {name} ({described.get('StackStatus')}) has no UserPoolId and "
                          "UserPoolClientId outputs; deploy the stage (again) first")
    return StagePool(name, outputs["UserPoolId"], outputs["UserPoolClientId"], parameters.get("JwtRequiredGroup", ""))


def stage_token(session: Any, stage: str, user: str, stack_name: Optional[str] = None,
                password: Optional[str] = None, log: Any = None, reset: bool = False) -> str:
    """An access token for ``user`` from ``stage``'s pool (the user created if needed); what it did
    to the user, and a password it set, go to ``log`` (stderr)."""
    def say(message: str) -> None:
        print(message, file=log or sys.stderr)

    pool = stage_pool(session.client("cloudformation"), stage, stack_name)
    cognito = session.client("cognito-idp")
    try:
        result = sign_in(cognito, pool.user_pool_id, pool.client_id, user, password, pool.required_group, reset)
    except ClientError as exc:  # e.g. a name the pool refuses (an email address: email is an alias)
        raise SignInError(f"{user}: {exc.response['Error']['Code']}: {exc.response['Error'].get('Message', '')}") from None
    where = f"user pool {pool.user_pool_id} (stack {pool.stack_name})"
    if result.created:
        say(f"Created {user} in {where}.")
    if result.new_password and not result.created:
        say(f"{user} existed in {where}: a new password was set, as asked; the previous one no longer works.")
    if result.new_password:
        say(f"Password for {user} (shown once, for the web page's sign-in): {result.new_password}")
    if pool.required_group:
        say(f"{user} is in the required group {pool.required_group}.")
    say(f"Access token for {user} (valid {result.tokens.get('ExpiresIn', '?')} s), last line:")
    return str(result.tokens["AccessToken"])


def main(argv: Optional[Sequence[str]] = None, session: Any = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.signin", description=__doc__.split("\n\n")[0])
    parser.add_argument("user")
    parser.add_argument("--stage", required=True)
    parser.add_argument("--stack-name", help="the stage's stack (default: agentstream-<stage>-data, else agentstream-<stage>)")
    parser.add_argument("--password", default=environ.get(PASSWORD_ENV) or None,
                        help=f"the user's own password (default: {PASSWORD_ENV}); a new user without it gets a generated one")
    parser.add_argument("--reset-password", action="store_true", default=environ.get(RESET_ENV, "") not in ("", "0"),
                        help=f"replace an existing user's password with a generated one (default: {RESET_ENV}=1)")
    parser.add_argument("--region", help="default: AWS_REGION, AWS_DEFAULT_REGION or the profile's")
    parser.add_argument("--profile")
    args = parser.parse_args(argv)
    if session is None:
        import boto3

        session = boto3.session.Session(profile_name=args.profile,
                                        region_name=args.region or environ.get("AWS_REGION") or None)
    if not session.region_name:
        print("No AWS Region: pass --region or set AWS_REGION (or a profile's region).", file=sys.stderr)
        return 2
    try:
        token = stage_token(session, args.stage, args.user, args.stack_name, args.password, reset=args.reset_password)
    except SignInError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
